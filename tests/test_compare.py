"""deft compare: one run per objective, evaluation, paper-style table, resumable; grids."""

import json

import pytest

from deft.analysis.tables import build_table, format_markdown
from deft.recipes.compare import run_name
from deft.cli.main import main


def test_table_marks_best_bold_and_second_underlined():
    results = {
        "Base": {"figfont": {"exact": 0.0, "jaro_winkler": 0.30, "k": 1}},
        "nll": {"figfont": {"exact": 0.25, "jaro_winkler": 0.60, "k": 1}},
        "deft": {"figfont": {"exact": 0.50, "jaro_winkler": 0.55, "k": 1}},
    }
    titles, rows, methods = build_table(results)
    assert titles == ["figfont EM", "figfont JW", "Avg"]
    assert rows[2] == pytest.approx([50.0, 55.0, 52.5])
    md = format_markdown(titles, rows, methods)
    assert "| deft | **50.00** | <u>55.00</u> | **52.50** |" in md
    assert "| nll | <u>25.00</u> | **60.00** | <u>42.50</u> |" in md
    tied = format_markdown(*build_table({"a": {"figfont": {"exact": 0.0, "jaro_winkler": 0.1}},
                                         "b": {"figfont": {"exact": 0.0, "jaro_winkler": 0.2}}}))
    assert "| a | 0.00 |" in tied and "| b | 0.00 | **20.00** |" in tied  # a column where all tie: no mark
    math = build_table({"a": {"math500": {"average_at_k": 0.4, "k": 16}}})
    assert math[0] == ["math500 Avg@16", "Avg"]


def test_run_names_are_directory_safe():
    assert run_name("power:alpha=0.5") == "power-alpha0.5"
    assert run_name("nll[p>=0.1]") == "nll-p-ge0.1" != run_name("nll[p<=0.1]")


def test_compare_end_to_end_and_resumable(tiny_model_dir, figfont_records, tmp_path, capsys):
    args = ["compare", "--model", str(tiny_model_dir), "--train", str(figfont_records), "--objectives", "nll,deft",
            "--benchmark", "figfont", "--eval-size", "2", "--max-new-tokens", "4", "--out", str(tmp_path),
            "max_steps=2", "batch_size=2", "max_length=256"]
    assert main(args) == 0
    md = (tmp_path / "results.md").read_text()
    for method in ("Base", "nll", "deft"):
        assert f"| {method} |" in md
    assert (tmp_path / "results.csv").read_text().startswith("method,figfont EM,figfont JW,Avg")
    assert (tmp_path / "training_curves.png").exists() and (tmp_path / "gate_curves.png").exists()
    before = (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "training already done" in out and "evaluation already done" in out
    assert (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime == before


def test_grid_file(tiny_model_dir, figfont_records, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({
        "out": str(tmp_path / "grid"), "models": [str(tiny_model_dir)], "datasets": {"ff": str(figfont_records)},
        "objectives": ["nll"], "benchmarks": ["figfont"], "base": False,
        "train": {"max_steps": 1, "batch_size": 2, "max_length": 256}, "eval": {"size": 2, "max_new_tokens": 4},
    }))
    assert main(["compare", "--grid", str(grid)]) == 0
    assert "| nll |" in (tmp_path / "grid" / "results.md").read_text()


@pytest.mark.parametrize("args,match", [
    (["compare", "--benchmark", "figfont"], "--train"),
    (["compare", "--train", "x.jsonl"], "--benchmark"),
    (["compare", "--grid", "/nonexistent.yaml"], "not found"),
])
def test_compare_errors(args, match, capsys):
    assert main(args) == 2
    assert match in capsys.readouterr().err
