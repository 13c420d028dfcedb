"""Tests of deft.cli.compare: ``deft compare``: train one run per objective (and seed), evaluate each
and the base model, print a paper-style table with intervals."""

import pytest

from deft.cli.main import main


@pytest.mark.parametrize("args,match", [
    (["compare", "--benchmark", "figfont"], "--data"),
    (["compare", "--grid", "/nonexistent.yaml"], "not found"),
])
def test_compare_errors(args, match, capsys):
    assert main(args) == 2
    assert match in capsys.readouterr().err
