"""Tests of deft.recipes.paper_run: running one paper cell: its options as a config (YAML or flags),
its plan executed step by step (resumable), and the results table with the paper's number beside
each measured one."""

import json
from pathlib import Path

import pytest

from deft.recipes.paper_protocol import format_plan
from deft.recipes.paper_run import load_paper_cell, measured_table, plan_from_config
from deft.recipes.paper_tables import BENCHMARKS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "paper"


def _tiny_plan(tiny_model_dir, out, batch_size=2):
    from deft.recipes.paper_protocol import plan_paper_cell

    return plan_paper_cell("figfont", "qwen-2.5-1.5b", ["original", "DEFT"], out=str(out), model=str(tiny_model_dir),
                           data_n=8, train_overrides={"max_steps": 2, "batch_size": batch_size, "grad_accum": 1,
                                                      "max_length": 512, "truncation": "left", "dtype": "float32",
                                                      "gradient_checkpointing": False},
                           eval_overrides={"n": 2, "batch_size": 2})


def test_measured_table_reads_the_paper_metrics():
    results = {
        "Base": {"figfont": {"score": 0.25, "jaro_winkler_similarity": 0.5, "exact": 0.75, "jaro_winkler": 0.9},
                 "average": {"x": 1}},
        "deft": {"figfont": {"exact": 0.5, "jaro_winkler": 0.625}},
    }
    titles, rows, methods = measured_table(results, "figfont")
    assert titles == ["Exact Math", "Jaro_winkler similarity"] and methods == ["Base", "deft"]
    assert rows == [[25.0, 50.0], [50.0, 62.5]]
    math = {"p": {b: {"mean_acc": v, "acc": 0.0, "average_at_k": 0.0}
                  for b, v in zip(("math500", "minerva_math", "olympiadbench", "aime24", "amc23"),
                                  (0.5, 0.25, 0.125, 0.0, 0.375))}}
    assert measured_table(math, "math")[1] == [[50.0, 25.0, 12.5, 0.0, 37.5, 25.0]]
    medical = {"nll": {"medical/NEJM": {"acc": 0.5}, "medical/MedQA_USLME_test": {"average_at_k": 0.25},
                       "medical": {"average_at_k": 0.375}}}
    row = measured_table(medical, "medical")[1][0]
    assert row[BENCHMARKS["medical"].index("nejm")] == 50.0 and row[1] == 25.0 and row[-1] == 37.5


@pytest.mark.parametrize("regime", ["math", "medical", "figfont"])
def test_examples_load_and_plan(regime):
    path = EXAMPLES / f"{regime}.yaml"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# deft compare --protocol paper --config examples/paper/") and regime in first
    cfg = load_paper_cell(str(path))
    assert cfg.regime == regime
    plan = plan_from_config(cfg)
    assert [s.kind for s in plan.steps].count("train") == len(cfg.objectives)
    assert "commands, in order:" in format_plan(plan)


def test_cell_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("regime: figfont\nmodel_key: qwen-2.5-7b\nobjectivs: [p]\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown option 'objectivs' \(did you mean 'objectives'\?\)"):
        load_paper_cell(str(bad))
    with pytest.raises(ValueError, match="needs --regime"):
        load_paper_cell(None, {"model_key": "qwen-2.5-7b"})
    mapping = tmp_path / "ok.yaml"
    mapping.write_text(json.dumps({"regime": "figfont", "model_key": "qwen-2.5-7b", "train": {"max_steps": 3}}))
    plan = plan_from_config(load_paper_cell(str(mapping), {"n_gpus": "2"}))
    assert plan.steps[1].settings.max_steps == 3 and plan.n_gpus == 2


@pytest.mark.usefixtures("deft_steps_in_process")
def test_run_trains_for_real_and_keeps_finished_evaluations(tiny_model_dir, tmp_path):
    """Data and training run for real; evaluations already present (results.json) are not redone,
    and the table puts the paper's numbers beside them."""
    from deft.recipes.paper_run import run_paper_cell

    plan = _tiny_plan(tiny_model_dir, tmp_path)
    given = {"base": (0.25, 0.5), "nll": (0.0, 0.375), "deft": (0.5, 0.75)}
    for name, (exact, jw) in given.items():
        folder = tmp_path / "eval" / name
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"figfont": {"exact": exact, "jaro_winkler": jw, "k": 1}}))
    logs = []
    md = run_paper_cell(plan, log=logs.append)
    records = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert len(records) == 8 and records[0]["id"] == "figfont-paper-train-0"
    for name in ("nll", "deft"):
        assert (tmp_path / "runs" / name / "final").is_dir()
        metrics = [json.loads(x) for x in (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert max(m.get("step", 0) for m in metrics) == 2
    # hand-computed: 25.00 - 0.00 = +25.00 (Base EM); 37.50 - 33.65 = +3.85 (NLL JW); 75.00 - 33.66 = +41.34
    assert "| Base | 25.00 (paper 0.00, Δ +25.00) | 50.00 (paper 35.32, Δ +14.68) |" in md
    assert "| nll | 0.00 (paper 0.00, Δ +0.00) | 37.50 (paper 33.65, Δ +3.85) |" in md
    assert "| deft | 50.00 (paper 0.00, Δ +50.00) | 75.00 (paper 33.66, Δ +41.34) |" in md
    assert (tmp_path / "results_paper.md").read_text() == md
    rows = (tmp_path / "paper_comparison.csv").read_text().splitlines()
    assert rows[0] == "method,column,measured,paper,delta,source" and len(rows) == 1 + 3 * 2
    assert json.loads((tmp_path / "plan.json").read_text())["hyper"]["lr"] == 5e-5
    assert sum("evaluation already done" in line for line in logs) == 3
    before = (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime
    logs.clear()
    assert run_paper_cell(plan, log=logs.append) == md  # a second run redoes nothing
    assert any("training already done" in line for line in logs)
    assert (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime == before


@pytest.mark.skipif(__import__("importlib").util.find_spec("deft.eval.config") is None,
                    reason="this deft eval has no --protocol paper")
@pytest.mark.usefixtures("deft_steps_in_process")
def test_figfont_cell_end_to_end(tiny_model_dir, tmp_path):
    from deft.recipes.paper_run import run_paper_cell

    md = run_paper_cell(_tiny_plan(tiny_model_dir, tmp_path), log=lambda *_: None)
    for name in ("base", "nll", "deft"):
        res = json.loads((tmp_path / "eval" / name / "results.json").read_text())
        assert res["figfont"]["n"] == 2
    assert md.count("(paper ") == 3 * 2 and "Jaro_winkler similarity" in md


def test_cell_main_dry_run_from_flags_and_yaml():
    from deft.recipes.paper_run import paper_cell_main

    text = paper_cell_main(None, {"regime": "figfont", "model_key": "llama-3.2-3b", "objectives": "original,DEFT",
                                  "out": "runs/y", "dry_run": "true"})
    assert "lr                      5e-5" in text and "objectives: original -> nll, DEFT -> deft" in text
    assert "6. deft eval --model runs/y/runs/deft/final" in text
    text = paper_cell_main(str(EXAMPLES / "math.yaml"), {"dry_run": True, "n_gpus": 4})
    assert "grad accumulation       16" in text and "--data-dir data/math_eval" in text


@pytest.mark.slow
@pytest.mark.usefixtures("deft_steps_in_process")
def test_figfont_cell_end_to_end_on_the_embedded_model(smollm2_first_load, tmp_path):
    """The paper's FigFont protocol for real on the embedded SmolLM2-135M: the reference's data items
    and Qwen literal prompt, two training steps of one example per objective, greedy evaluation of 5
    new tokens with the paper's scorers, and the published numbers beside the measured ones."""
    from deft.recipes.paper_run import run_paper_cell

    md = run_paper_cell(_tiny_plan("smollm2-135m", tmp_path, batch_size=1), log=lambda *_: None)
    for name in ("base", "nll", "deft"):
        res = json.loads((tmp_path / "eval" / name / "results.json").read_text())
        assert res["figfont"]["n"] == 2
        assert 0.0 <= res["figfont"]["jaro_winkler_similarity"] <= 1.0
    summary = json.loads((tmp_path / "runs" / "deft" / "summary.json").read_text())
    assert summary["steps"] == 2
    assert md.count("(paper ") == 3 * 2
