"""The ``deft`` entry point: lazy subcommands (help without torch), one-line errors, suggestions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deft.cli.main import SUBCOMMANDS, build_parser, main

_PROBE = """
import sys
from deft.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = [m for m in ("torch", "transformers", "datasets", "reasoning_gym") if m in sys.modules]
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("verb", ["", *SUBCOMMANDS])
def test_help_imports_no_torch(verb):
    argv = [verb, "--help"] if verb else ["--help"]
    out = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: deft" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", f"'deft {verb} --help' imported {out.stdout.splitlines()[-1]}"


def test_top_level_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "deft.cli.main", "--help"], capture_output=True, text=True).stdout
    for verb, summary in SUBCOMMANDS.items():
        assert verb in out and summary.split()[0] in out


def test_unknown_flag_suggests_the_closest(capsys):
    assert main(["train", "--learnig-rate", "1e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("deft train: error: unrecognized argument '--learnig-rate' (did you mean '--learning-rate'?); "
                   "see 'deft train --help'")


def test_bad_value_is_one_line_before_any_model_loads(capsys):
    assert main(["train", "--data", "x.jsonl", "--lr", "inf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["deft train: error: command line: 'lr' must be a finite number, got inf"]


def test_help_lists_every_subcommand_and_every_option_has_help():
    parser = build_parser()
    top = parser.format_help()
    for verb in SUBCOMMANDS:
        assert verb in top
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb, p in sub.choices.items():
        assert p.description, verb
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"deft {verb}: option {action.option_strings or action.dest} has no help"
