"""Tests of deft.eval.config: ``EvalConfig``: every option of ``deft eval`` /
:func:`deft.eval.evaluate`, written once."""

import argparse


def test_eval_config_flags_aliases_and_yaml(tmp_path):
    from deft.config import config_from_args
    from deft.eval.config import EvalConfig, preset

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    from deft.cli import eval as eval_cli

    eval_cli.add_parser(sub)
    yaml_file = tmp_path / "eval.yaml"
    yaml_file.write_text("benchmark: [figfont]\nn: 7\ntemperature: 0.5\nprotocol: paper\n")
    args = parser.parse_args(["eval", "--config", str(yaml_file), "--size", "9", "--output-dir", "o",
                              "--no-progress", "-b", "rg:basic_arithmetic,figfont"])
    cfg = config_from_args(EvalConfig, args)
    assert cfg.n == 9 and cfg.out == "o" and cfg.progress is False and cfg.temperature == 0.5
    assert cfg.benchmark == ["rg:basic_arithmetic", "figfont"]
    # the paper presets fill only what the user left unset: figfont's 5 tokens, not the temperature
    assert preset(cfg, "figfont") == {"k": 1, "temperature": 0.5, "top_p": 1.0, "max_new_tokens": 5}
    assert preset(cfg, "math")["k"] == 16 and preset(cfg, "other")["k"] == 1
