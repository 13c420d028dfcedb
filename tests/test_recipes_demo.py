"""Tests of deft.recipes.demo: the main job of ``make demo``: a story in four steps on the embedded
model (SmolLM2-135M-Instruct)."""

import pytest

from deft.cli.main import main
from plot_helpers import ReportPage, markdown_rows

pytestmark = pytest.mark.usefixtures("deft_steps_in_process")  # steps in this process (conftest)


def test_demo_runs_end_to_end_on_a_tiny_model(tmp_path, capsys, tiny_model_dir):
    """The main job's pipeline (probe, fine-tunes, held-out and forgetting metrics, evaluation,
    plots, report) on a tiny random model; ``make demo`` runs the same on the embedded model."""
    assert main(["demo", "--model", str(tiny_model_dir), "--out", str(tmp_path), "--steps", "2",
                 "--batch-size", "2", "--eval-size", "2", "--objectives", "nll,deft"]) == 0
    out = capsys.readouterr().out
    assert "token statistics per optimizer step" in out and "figfont JW" in out and "heldout_nll" in out
    for name in ("training_curves.png", "gate_curves.png", "results.md", "results.csv", "report/index.html"):
        assert (tmp_path / name).exists(), name
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "method" and {"heldout_nll", "heldout_mean_p", "drift_kl", "retained_nll",
                                      "seeds"} <= set(header)
    # content tokens lead the token-level columns; end-of-turn tokens come second
    assert header[1:5] == ["figfont EM", "figfont JW", "figfont truncated %", "Avg"]  # the share beside accuracy
    assert header[5:10] == ["content_nll", "content_mean_p", "content learned %", "content forgotten %", "end_mean_p"]
    lines = (tmp_path / "results.csv").read_text().splitlines()[1:]
    rows = {r.split(",")[0]: dict(zip(header, r.split(","))) for r in lines}
    assert float(rows["deft"]["content_nll"]) > 0 and rows["deft"]["content learned %"] != ""
    assert "| content_nll | content_mean_p | content learned % |" in out
    assert (tmp_path / "runs" / "deft" / "final" / "model.safetensors").exists()
    # the report page leads with the table the terminal printed, every objective's row, figures inlined
    page = ReportPage((tmp_path / "report" / "index.html").read_text(encoding="utf-8"))
    assert page.tables["results"] == markdown_rows((tmp_path / "results.md").read_text())
    assert [row[0][0] for row in page.tables["results"][1:]] == ["Base", "nll", "deft"]
    assert page.order[0] == "table.results" and all(ref.startswith("data:image/png;base64,") for ref in page.refs)
