"""Tests of deft.analysis.training_curves: the per-step rows of a run's ``metrics.jsonl`` (evaluation
rows left out, errors located) and the Figure 5 view drawn from them."""

import json

import pytest

from deft.analysis.training_curves import plot_training_curves, read_metrics

ROWS = [
    {"step": 1, "loss": 2.5, "mean_p": 0.1, "mean_focus": 0.05},
    {"step": 1, "eval_loss": 2.4},  # an evaluation row: no "loss"
    {"step": 2, "loss": 2.0, "mean_p": 0.2, "mean_focus": 0.07},
]


def _run(tmp_path, rows=ROWS, name="run"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    return folder


def test_read_metrics_keeps_the_step_rows_from_a_folder_or_the_file(tmp_path):
    folder = _run(tmp_path)
    assert read_metrics(folder) == [ROWS[0], ROWS[2]]
    assert read_metrics(folder / "metrics.jsonl") == [ROWS[0], ROWS[2]]


def test_read_metrics_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        read_metrics(tmp_path)
    folder = _run(tmp_path)
    with open(folder / "metrics.jsonl", "a") as f:
        f.write("{broken\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:5: not a JSON line"):
        read_metrics(folder)


def test_plot_draws_every_run_into_one_png(tmp_path):
    a = _run(tmp_path, name="a")
    b = _run(tmp_path, [{"step": s, "loss": 1.0 / s, "mean_p": 0.1 * s} for s in range(1, 6)], name="b")
    path = plot_training_curves({"nll": a, "deft": b}, tmp_path / "plots" / "curves.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(FileNotFoundError):
        plot_training_curves({"missing": tmp_path / "nowhere"}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
