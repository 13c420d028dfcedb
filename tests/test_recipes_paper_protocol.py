"""Tests of deft.recipes.paper_protocol: one cell of the paper's Tables 1-3 as a deft recipe: the
reference's one-click generator (``scripts/one_click/TEMPLATE.py`` and ``script_generator.py`` of
``luludus/DEFT``) rewritten as data, so that ``deft compare --protocol paper --regime R --model-key
K`` trains and evaluates exactly what the paper's cell was made from, and ``--dry-run`` prints it."""

import pytest

from deft.recipes.paper_protocol import format_plan, paper_train_options, plan_paper_cell, reference_objective


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


def test_given_training_records(tmp_path):
    records = tmp_path / "ff.jsonl"
    plan = plan_paper_cell("figfont", "qwen-2.5-7b", ["DEFT"], train_data=str(records))
    assert plan.steps[0].argv[-2:] == ("--out", str(records)) and plan.steps[1].settings.data == str(records)
    records.write_text('{"prompt": "q", "response": "a"}\n')
    plan = plan_paper_cell("figfont", "qwen-2.5-7b", ["DEFT"], train_data=str(records))
    assert [s.kind for s in plan.steps] == ["train", "eval", "eval"]  # existing records: no data step


def test_a_cell_is_planned_from_its_config_and_the_keyword_form_gives_the_same_plan():
    from deft.config import load_config
    from deft.recipes.paper_protocol import PaperCellConfig, plan_to_dict

    cfg = load_config(PaperCellConfig, None, {"regime": "figfont", "model_key": "qwen-2.5-1.5b", "out": "runs/x",
                                              "objectives": "original, DEFT", "base": "false",
                                              "train": ["max_steps=4"], "eval": ["n=8"]})
    plan = plan_paper_cell(cfg)
    assert [s.name for s in plan.steps] == ["train records", "original", "DEFT", "original", "DEFT"]  # no base
    assert [s.settings.max_steps for s in plan.steps if s.kind == "train"] == [4, 4]
    keywords = plan_paper_cell("figfont", "qwen-2.5-1.5b", ["original", "DEFT"], out="runs/x", evaluate_base=False,
                               train_overrides={"max_steps": 4}, eval_overrides={"n": 8})
    assert plan_to_dict(keywords) == plan_to_dict(plan)
