"""The paper protocol's one-click recipe: Tables 1-3 as data (checked against the paper's text), the
paper column beside measured numbers, the reference's presets in the plan of a cell, the examples."""

import glob
import json
import re
from pathlib import Path

import pytest

from deft.recipes.paper_protocol import format_plan, paper_train_options, plan_paper_cell, reference_objective
from deft.recipes.paper_run import load_paper_cell, measured_table, plan_from_config
from deft.recipes.paper_tables import (BENCHMARKS, COLUMN_TITLES, MODEL_OF_KEY, METHODS, paper_benchmark,
                                       paper_comparison, paper_method, paper_row, paper_value, with_paper_column)

# the paper's text, where a copy of the project's shared folder sits beside the repository
SEED = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / "shared" / "seeds" / "002_*.txt")))
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "paper"


# ------------------------------------------------------------------ the tables as data

@pytest.mark.parametrize("regime,key,objective,bench,value,row,column", [
    ("math", "qwen-2.5-math-1.5b", "p", "math500", 63.48, "Qwen2.5-Math-1.5B / -p", "Math500"),
    ("math", "qwen-2.5-math-1.5b", "DEFT", "amc23", 35.63, "Qwen2.5-Math-1.5B / DEFT", "AMC23"),  # underlined
    ("math", "llama-3.1-8b", "Cayley_Trans", "avg", 10.38, "LLaMA-3.1-8B / Cayley-Trans", "Avg"),
    ("math", "deepseek-math-7b", "original", "olympiadbench", 6.65, "DeepseekMath-7B / -logp", "Olympiad Bench"),
    ("math", "qwen-2.5-math-7b", "base", "aime24", 6.04, "Qwen2.5-Math-7B / Base", "AIME24"),
    ("medical", "llama-3.1-8b", "deft", "avg", 52.00, "LLaMA-3.1-8B / DEFT", "Avg"),
    ("medical", "llama-3.2-3b", "cayley_floor", "medical/GPQA_Medical_test", 32.56, "LLaMA-3.2-3B / Cayley-Trans",
     "GPQA"),
    ("medical", "qwen-2.5-math-7b", "EAFT", "MedBullets_op5", 30.19, "Qwen2.5-Math-7B / EAFT", "MedB(5)"),
    ("medical", "qwen-2.5-1.5b", "nll", "medical/PubMedQA_test", 68.80, "Qwen2.5-1.5B / -logp", "PubMed"),
    ("figfont", "qwen-2.5-7b", "eaft", "figfont EM", 47.66, "Qwen2.5-7B / EAFT", "Exact Math"),
    ("figfont", "llama-3.2-3b", "DEFT", "jaro_winkler", 60.22, "LLaMA-3.2-3B / DEFT", "Jaro_winkler similarity"),
    ("figfont", "llama-3.1-8b", "Cayley_Trans", "exact", 0.01, "LLaMA-3.1-8B / Cayley-Trans", "Exact Math"),
    ("figfont", "qwen-2.5-1.5b", "-logp", "JW", 33.65, "Qwen2.5-1.5B / -logp", "Jaro_winkler similarity"),
])
def test_transcribed_cells(regime, key, objective, bench, value, row, column):
    cell = paper_value(regime, key, objective, bench)
    table = {"math": 1, "medical": 2, "figfont": 3}[regime]
    assert cell.value == value
    assert cell.source == f"Table {table}, row {row}, column {column}"


def test_every_cell_is_transcribed_and_the_means_agree():
    rows = {(r, k, m): paper_row(r, k, m) for r in BENCHMARKS for k in MODEL_OF_KEY for m in METHODS}
    filled = {key: row for key, row in rows.items() if row}
    assert len(filled) == 3 * 4 * 6  # four models per table, six methods each
    assert sum(len(row) for row in filled.values()) == 4 * 6 * (6 + 11 + 2)
    for (regime, key, method), row in filled.items():
        assert list(row) == list(BENCHMARKS[regime])
        if "avg" in row:  # the printed mean agrees with the printed benchmarks (two-decimal rounding)
            parts = [v for b, v in row.items() if b != "avg"]
            assert abs(sum(parts) / len(parts) - row["avg"]) <= 0.006, (regime, key, method)


def _section(text: str, table: int) -> str:
    start = text.index(f"Table {table} |")
    following = [m.start() for m in re.finditer(r"^Table \d+ \|", text, re.M) if m.start() > start]
    return text[start:following[0] if following else len(text)]


@pytest.mark.skipif(not SEED, reason="the paper's text is not available beside the repository")
def test_every_row_is_printed_in_the_paper_text_under_its_model():
    text = re.sub(r"</?u>", "", Path(SEED[0]).read_text(encoding="utf-8"))
    labels = {"Base": "Base", "-logp": "-logp", "-p": "-p", "EAFT": "EAFT", "Cayley-Trans": "Cayley-Trans",
              "DEFT": "DEFT"}
    for regime, table in (("math", 1), ("medical", 2)):
        section = _section(text, table)
        models = sorted(((section.index(MODEL_OF_KEY[k] + "\t"), k) for k in MODEL_OF_KEY
                         if paper_row(regime, k, "Base")))
        for i, (start, key) in enumerate(models):
            end = models[i + 1][0] if i + 1 < len(models) else len(section)
            block = section[start:end]
            for method in METHODS:
                values = "\t".join(f"{v:.2f}" for v in paper_row(regime, key, method).values())
                assert f"{labels[method]}\t{values}\n" in block, (regime, key, method)
    section = _section(text, 3)  # transposed: a model's first line starts with its name
    for key in MODEL_OF_KEY:
        if not paper_row("figfont", key, "Base"):
            continue
        lines = []
        for metric in ("exact", "jaro_winkler"):
            values = "\t".join(f"{paper_row('figfont', key, m)[metric]:.2f}" for m in METHODS)
            lines.append(f"{COLUMN_TITLES['figfont'][metric]}\t{values}\n")
        assert f"{MODEL_OF_KEY[key]}\t{lines[0]}\t{lines[1]}" in section, key


def test_names_map_to_the_paper_rows_and_columns():
    names = ("original", "logp", "nll", "p", "Cayley_Trans", "cayley_floor", "DEFT", "deft", "EAFT", "eaft:k=20",
             "Base")
    assert [paper_method(n) for n in names] == ["-logp", "-logp", "-logp", "-p", "Cayley-Trans", "Cayley-Trans",
                                                "DEFT", "DEFT", "EAFT", "EAFT", "Base"]
    assert paper_method("p[p>=0.1]") is None and paper_method("cayley") is None and paper_method("eaft:k=5") is None
    with pytest.raises(ValueError, match="valid objectives"):
        paper_method("nonsense")
    assert paper_benchmark("math", "math_oai") == "math500" and paper_benchmark("math", "math500 Avg@16") == "math500"
    assert paper_benchmark("medical", "medical/MedMCQA_validation") == "medmcqa"
    assert paper_benchmark("medical", "medical/MedQA_USLME_test") == "medqa"
    assert paper_benchmark("medical", "MedBullets_op4") == "medbullets_op4"
    assert paper_benchmark("medical", "medical") == "avg"
    assert paper_benchmark("figfont", "exact_normalized_paper") is None  # not the paper's raw exact match
    assert paper_benchmark("figfont", "figfont JW") == "jaro_winkler"


def test_cells_the_paper_does_not_print_and_bad_names():
    missing = paper_value("math", "qwen-2.5-7b", "DEFT", "math500")
    assert missing.value is None and "no rows for qwen-2.5-7b" in missing.source
    assert paper_value("figfont", "llama-3.2-3b", "p[p>=0.1]", "exact").value is None
    for args, match in [(("algebra", "qwen-2.5-7b", "p", "x"), "regime 'algebra': unknown; use one of math, "),
                        (("math", "gpt-9", "p", "math500"), "model key 'gpt-9': unknown; use one of qwen-2.5-math"),
                        (("math", "llama-3.1-8b", "p", "gsm8k"), "not a column .* math500, minerva_math")]:
        with pytest.raises(ValueError, match=match):
            paper_value(*args)


def test_paper_column_beside_measured_numbers():
    titles = ["math500 Avg@16", "aime24 Avg@16", "Avg"]
    rows = [[30.0, 2.5, 16.25], [None, 1.0, 1.0], [60.0, 5.0, 32.5]]
    cells = with_paper_column(titles, rows, ["Base", "nll", "p[p>=0.1]"], regime="math", model_key="qwen-2.5-math-1.5b")
    # hand-computed: 30.00 - 30.71 = -0.71, 2.50 - 2.49 = +0.01; the mean covers two of five benchmarks
    assert cells[0] == ["30.00 (paper 30.71, Δ -0.71)", "2.50 (paper 2.49, Δ +0.01)", "16.25"]
    assert cells[1] == ["- (paper 41.70)", "1.00 (paper 1.45, Δ -0.45)", "1.00"]
    assert cells[2] == ["60.00", "5.00", "32.50"]  # no such row in the paper
    records = paper_comparison(titles, rows, ["Base", "nll", "p[p>=0.1]"], regime="math",
                               model_key="qwen-2.5-math-1.5b")
    assert [(r["method"], r["column"], r["paper"]) for r in records] == [
        ("Base", "math500 Avg@16", 30.71), ("Base", "aime24 Avg@16", 2.49), ("nll", "math500 Avg@16", 41.70),
        ("nll", "aime24 Avg@16", 1.45)]
    assert records[0]["delta"] == pytest.approx(-0.71) and records[2]["delta"] is None
    full = ["Math500", "Minerva Math", "Olympiad Bench", "AIME24", "AMC23", "Avg"]
    cell = with_paper_column(full, [[0.0] * 5 + [1.0]], ["deft"], regime="math", model_key="llama-3.1-8b")[0][-1]
    assert cell == "1.00 (paper 11.35, Δ -10.35)"


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


# ------------------------------------------------------------------ the plan of a cell

def test_dry_run_prints_the_reference_hyper_parameters():
    plan = plan_paper_cell("figfont", "qwen-2.5-1.5b", out="runs/x")
    text = format_plan(plan)
    for line in ("lr                      5e-5", "global batch            256", "max length              800",
                 "weight decay            1e-5", "epochs                  1", "lr schedule             cosine",
                 "warmup ratio            0.1", "micro-batch per GPU     16", "grad accumulation       16",
                 "loss normalization      micro_batch", "max_new_tokens          5", "temperature             0"):
        assert line in text, line
    assert "1. deft data figfont --protocol paper --split train --out runs/x/data/train.jsonl" in text
    assert "Base                    [Base] Exact Math 0.00  Jaro_winkler similarity 35.32" in text
    assert "objectives: original -> nll, p -> p, Cayley_Trans -> cayley_floor, DEFT -> deft" in text
    trains = [s.settings for s in plan.steps if s.kind == "train"]
    assert [c.objective for c in trains] == ["nll", "p", "cayley_floor", "deft"]
    for cfg in trains:  # validated TrainConfigs with the reference's values
        assert (cfg.lr, cfg.batch_size * cfg.grad_accum, cfg.max_length, cfg.weight_decay, cfg.epochs) == \
            (5e-5, 256, 800, 1e-5, 1.0)
        assert (cfg.lr_scheduler, cfg.warmup_ratio, cfg.protocol, cfg.loss_normalization, cfg.template) == \
            ("cosine", 0.1, "paper", "micro_batch", "paper")
        assert (cfg.adam_beta1, cfg.adam_beta2, cfg.model_key, cfg.resolved_template()) == \
            (0.9, 0.95, "qwen-2.5-1.5b", "paper:qwen")
    assert [s.settings["out"] for s in plan.steps if s.kind == "eval"] == \
        ["runs/x/eval/base", "runs/x/eval/nll", "runs/x/eval/p", "runs/x/eval/cayley_floor", "runs/x/eval/deft"]


def test_presets_per_model_regime_and_gpus():
    assert paper_train_options("figfont", "llama-3.1-8b")["lr"] == 2e-5
    assert "lr                      2e-5" in format_plan(plan_paper_cell("figfont", "llama-3.1-8b"))
    math = paper_train_options("math", "llama-3.1-8b", n_gpus=2)
    assert (math["lr"], math["max_length"], math["batch_size"], math["grad_accum"], math["weight_decay"]) == \
        (2e-5, 3072, 4, 32, 0.01)
    assert paper_train_options("medical", "qwen-2.5-math-7b", n_gpus=8)["grad_accum"] == 2
    plan = plan_paper_cell("math", "deepseek-math-7b", ["DEFT"], n_gpus=2)
    ev = [s.settings for s in plan.steps if s.kind == "eval"][-1]
    assert (ev["k"], ev["temperature"], ev["top_p"], ev["max_new_tokens"], ev["prompt_family"]) == \
        (16, 1.0, 1.0, 4096, "deepseek")
    assert ev["benchmark"] == ["minerva_math", "olympiadbench", "aime24", "amc23", "math500"]
    assert plan.steps[1].argv[:6] == ("accelerate", "launch", "--multi_gpu", "--num_processes", "2", "-m")
    med = plan_paper_cell("medical", "llama-3.2-3b", ["p"], medical_eval="m1.json")
    ev = med.steps[-1].settings
    assert (ev["benchmark"], ev["k"], ev["temperature"], ev["max_new_tokens"]) == (["medical:m1.json"], 1, 0.0, 8000)
    assert med.steps[0].argv[:4] == ("deft", "data", "medical", "gaotang/medical_sft_processed")


@pytest.mark.parametrize("args,kwargs,match", [
    (("poetry", "qwen-2.5-1.5b"), {}, r"--regime 'poetry': unknown; use one of math, medical, figfont"),
    (("math", "qwen-2.5-7b"), {}, r"no math cell for it; use one of qwen-2.5-math-1.5b, qwen-2.5-math-7b"),
    (("figfont", "gpt-9"), {}, r"the reference's keys: qwen-2.5-math-1.5b.*use one of qwen-2.5-7b"),
    (("figfont", "qwen-2.5-7b", ["DEFT", "bogus"]), {}, r"'bogus' is not an objective; use the reference's names"),
    (("figfont", "qwen-2.5-7b", ["original", "nll"]), {}, "name the same objective twice"),
    (("math", "qwen-2.5-math-7b"), {"n_gpus": 3}, r"--n-gpus 3: .* use 1, 2, 4, 8, 16"),
    (("figfont", "qwen-2.5-7b"), {"train_overrides": {"lr": "-1"}}, "'lr' must be positive"),
])
def test_bad_cells_are_one_line_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        plan_paper_cell(*args, **kwargs)
    assert "\n" not in str(err.value)


def test_reference_objective_names():
    assert [reference_objective(n) for n in ("original", "p", "Cayley_Trans", "DEFT", "EAFT", "OnlyTopP-0.1")] == \
        ["nll", "p", "cayley_floor", "deft", "eaft:k=20,gamma=1.0", "OnlyTopP-0.1"]


# ------------------------------------------------------------------ examples

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


# ------------------------------------------------------------------ running a cell

def _tiny_plan(tiny_model_dir, out):
    from deft.recipes.paper_protocol import plan_paper_cell

    return plan_paper_cell("figfont", "qwen-2.5-1.5b", ["original", "DEFT"], out=str(out), model=str(tiny_model_dir),
                           data_n=8, train_overrides={"max_steps": 2, "batch_size": 2, "grad_accum": 1,
                                                      "max_length": 512, "truncation": "left", "dtype": "float32",
                                                      "gradient_checkpointing": False},
                           eval_overrides={"n": 2, "batch_size": 2})


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


def test_given_training_records(tmp_path):
    records = tmp_path / "ff.jsonl"
    plan = plan_paper_cell("figfont", "qwen-2.5-7b", ["DEFT"], train_data=str(records))
    assert plan.steps[0].argv[-2:] == ("--out", str(records)) and plan.steps[1].settings.data == str(records)
    records.write_text('{"prompt": "q", "response": "a"}\n')
    plan = plan_paper_cell("figfont", "qwen-2.5-7b", ["DEFT"], train_data=str(records))
    assert [s.kind for s in plan.steps] == ["train", "eval", "eval"]  # existing records: no data step


@pytest.mark.slow
def test_figfont_cell_end_to_end_on_the_embedded_model(smollm2_first_load, tmp_path):
    """The paper's FigFont protocol for real on the embedded SmolLM2-135M: the reference's data items
    and Qwen literal prompt, two training steps per objective, greedy evaluation of 5 new tokens with
    the paper's scorers, and the published numbers beside the measured ones."""
    from deft.recipes.paper_run import run_paper_cell

    md = run_paper_cell(_tiny_plan("smollm2-135m", tmp_path), log=lambda *_: None)
    for name in ("base", "nll", "deft"):
        res = json.loads((tmp_path / "eval" / name / "results.json").read_text())
        assert res["figfont"]["n"] == 2
        assert 0.0 <= res["figfont"]["jaro_winkler_similarity"] <= 1.0
    summary = json.loads((tmp_path / "runs" / "deft" / "summary.json").read_text())
    assert summary["steps"] == 2
    assert md.count("(paper ") == 3 * 2
