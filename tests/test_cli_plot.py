"""Tests of deft.cli.plot: ``deft plot``: the paper's figures from saved runs and probes, as PNGs and
an HTML page."""

import re

import pytest
import torch

from deft.analysis.token_stats import save_token_stats
from deft.cli.main import main

from plot_helpers import PNG, _stats, probes  # noqa: F401 (fixtures)


def test_plot_cli_theory_only(tmp_path):
    out = tmp_path / "theory"
    assert main(["plot", "--curve-objectives", "nll,p", "--out", str(out)]) == 0
    assert (out / "curves.png").read_bytes()[:8] == PNG
    assert re.findall(r'data-file="([^"]+)"', (out / "index.html").read_text()) == ["curves.png"]


@pytest.mark.parametrize("args, needle", [
    (["--runs", "{tmp}/no-run"], "metrics.jsonl"),
    (["--probes", "{tmp}/no-probe"], "no-probe"),
    (["--before", "{base}"], "--after"),
    (["--before", "{base}", "--after", "{other_cut}"], "has"),
])
def test_plot_cli_errors(args, needle, probes, tmp_path, capsys):
    st = _stats(1)
    cut = {k: (v[:200] if isinstance(v, torch.Tensor) else v) for k, v in st.items()}
    save_token_stats(cut, tmp_path / "cut" / "token_stats.npz")
    fill = {"tmp": str(tmp_path), "base": str(probes["base"]), "other_cut": str(tmp_path / "cut")}
    argv = ["plot", *[a.format(**fill) for a in args], "--curve-objectives", "nll", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "o" / "index.html").exists()


def test_plot_flags_reach_plot_config_as_lists():
    import argparse

    from deft.analysis.report import PlotConfig
    from deft.cli.plot import add_parser
    from deft.config import config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["plot", "--runs", "a=r/a, r/b", "--runs", "r/c", "--probes", "p1", "x=p2",
                              "--objectives", "nll, power:alpha=0.3,beta=1", "--max-points", "5"])
    cfg = config_from_args(PlotConfig, args)
    assert cfg.runs == ["a=r/a", "r/b", "r/c"] and cfg.probes == ["p1", "x=p2"]
    assert cfg.objectives == ["nll", "power:alpha=0.3,beta=1"] and cfg.curve_objectives == []
    assert (cfg.threshold, cfg.max_points, cfg.out) == (0.01, 5, "runs/plots")


@pytest.mark.parametrize("args, needle", [
    (["--threshold", "-0.1"], "'threshold' must be zero or positive, got -0.1"),
    (["--max-points", "0"], "'max_points' must be positive, got 0"),
    (["--max-points", "many"], "'max_points' must be an integer"),
])
def test_plot_bad_values_are_one_line_before_any_figure(args, needle, tmp_path, capsys):
    assert main(["plot", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "o").exists()
