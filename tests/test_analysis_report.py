"""Tests of deft.analysis.report: the paper's figures from saved runs and probes, as PNG files and one
``index.html`` page."""

import json
import re

import pytest

from deft.cli.main import main

from plot_helpers import PNG, probes  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    rows = [{"step": s, "loss": 3.0 - 0.1 * s, "mean_p": 0.05 + 0.02 * s, "mean_focus": 0.05 + 0.03 * s,
             "mean_entropy": 3.0 - 0.1 * s, "frac_p_below_1e-3": 0.3, "mean_gate": 0.5, "tokens": 10}
            for s in range(1, 11)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plot_cli_writes_pngs_and_index(probes, run_dir, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", "--runs", f"deft={run_dir}", "--probes", str(probes["base"]), f"tr={probes['trained']}",
                 "--before", str(probes["base"]), "--after", str(probes["trained"] / "token_stats.npz"),
                 "--objectives", "nll,p,eaft,deft,label_smoothing", "--curve-objectives", "nll,deft",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "label_smoothing" in printed and "learned" in printed
    names = ["training_curves.png", "landscape.png", "distribution.png", "learning.png", "curves.png"]
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 2000, name
    page = (out / "index.html").read_text()
    assert set(re.findall(r'src="([^"]+)"', page)) == set(names)
    assert "<table>" in page and "base" in page and "tr" in page
    shares = json.loads((out / "learning.json").read_text())
    assert shares["learned"] > 0.5  # every p went up by the shift
