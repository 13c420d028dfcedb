"""Tests of deft.cli.demo: ``deft demo`` parses its flags into :class:`DemoConfig` (help written once,
aliases, range checks) and refuses a bad value in one line before any model loads. The pipeline
itself runs end to end in test_recipes_demo.py."""

import argparse

import pytest

from deft.cli.demo import add_parser
from deft.recipes.demo import DemoConfig
from deft.cli.main import main
from deft.config import config_from_args


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser, parser.parse_args(["demo", *argv])


def test_every_flag_has_help_and_the_defaults_are_the_make_demo_job():
    parser, args = _parse()
    demo = parser._subparsers._group_actions[0].choices["demo"]
    for action in demo._actions:
        assert action.help, action.dest
    cfg = config_from_args(DemoConfig, args)
    assert (cfg.model, cfg.objectives, cfg.steps, cfg.batch_size, cfg.n, cfg.heldout_size) == (
        "smollm2-135m", ["nll", "p", "deft"], 8, 6, 16, 24)


def test_flags_and_their_aliases_reach_the_config():
    _, args = _parse("--max-steps", "3", "--eval-size", "0", "--objectives", "nll,cayley", "--lr", "1e-3",
                     "--output-dir", "x/y")
    cfg = config_from_args(DemoConfig, args)
    assert (cfg.steps, cfg.n, cfg.objectives, cfg.lr, cfg.out) == (3, 0, ["nll", "cayley"], 1e-3, "x/y")


@pytest.mark.parametrize("argv,message", [
    (["--steps", "0"], "'steps' must be positive, got 0"),
    (["--eval-size", "-1"], "'n' must be zero or positive, got -1"),
    (["--batch-size", "two"], "batch_size"),
])
def test_bad_values_are_one_line_before_any_model_loads(argv, message, capsys, monkeypatch):
    import deft.model

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(deft.model, "load_model", no_load)
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deft demo: error:") and message in err[0], err
