"""Tests of deft.recipes.compare: compare objectives: one training run per objective (and seed) on the
same model, data and hyper-parameters, each evaluated (and the base model), summarised as a paper-
style table."""

import json

import pytest

from deft.cli.main import main
from deft.recipes.compare import run_name

pytestmark = pytest.mark.usefixtures("deft_steps_in_process")  # steps in this process (conftest)


def _args(tiny_model_dir, figfont_records, out, *extra, objectives="nll,deft"):
    return ["compare", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--objectives", objectives,
            "--benchmark", "figfont", "--n", "2", "--max-new-tokens", "4", "--out", str(out), "--no-forgetting",
            *extra]


def test_run_names_are_directory_safe():
    assert run_name("power:alpha=0.5") == "power-alpha0.5"
    assert run_name("nll[p>=0.1]") == "nll-p-ge0.1" != run_name("nll[p<=0.1]")


def test_compare_end_to_end_reuses_unchanged_and_redoes_changed(tiny_model_dir, figfont_records, tmp_path, capsys):
    args = _args(tiny_model_dir, figfont_records, tmp_path, "max_steps=2", "batch_size=2", "max_length=256",
                 objectives="deft")
    assert main(args) == 0
    md = (tmp_path / "results.md").read_text()
    for method in ("Base", "deft"):
        assert f"| {method} |" in md
    csv_head = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert csv_head.startswith("method,figfont EM,figfont JW,figfont truncated %,Avg,content_nll,content_mean_p,"
                               "content learned %,content forgotten %,end_mean_p,drift_kl,retained_nll,"
                               "heldout_nll,heldout_mean_p,learned %,forgotten %,seeds")
    assert (tmp_path / "results.csv").read_text().splitlines()[1].startswith("Base,")
    assert (tmp_path / "training_curves.png").exists() and (tmp_path / "gate_curves.png").exists()
    recorded = json.loads((tmp_path / "runs" / "deft" / "inputs.json").read_text())
    assert recorded["settings"]["max_steps"] == 2 and len(recorded["hash"]) == 64
    before = (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("already done, inputs unchanged") == 3  # the run, its evaluation, the base evaluation
    assert (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime == before
    # --resume continues the same comparison (here: reuses everything) and says so
    assert main(args + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {tmp_path}: 3 finished job(s) reused, 0 to continue, 0 to start" in out
    assert out.count("already done, inputs unchanged") == 3
    # ... and never redoes: changed settings are refused in one line before anything changes
    assert main([a.replace("max_steps=2", "max_steps=3") for a in args] + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "redoes nothing, but 2 job(s) changed: deft: training (max_steps 2 -> 3)" in err[0]
    assert "drop --resume to redo them" in err[0]
    assert (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime == before
    assert json.loads((tmp_path / "table.json").read_text())["results"]["deft"]["figfont"]["n"] == 2
    # max_steps 2 -> 3: the run and its evaluation are redone, the base evaluation is reused
    assert main([a.replace("max_steps=2", "max_steps=3") for a in args]) == 0
    out = capsys.readouterr().out
    assert "deft: training: redoing (max_steps 2 -> 3)" in out
    assert "base: evaluation already done" in out and "deft: evaluation: redoing (run " in out
    assert json.loads((tmp_path / "runs" / "deft" / "summary.json").read_text())["steps"] == 3


def test_bad_inputs_are_refused_before_any_model_loads(tiny_model_dir, figfont_records, tmp_path, capsys, monkeypatch):
    import deft.model

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before validation")

    monkeypatch.setattr(deft.model, "load_model", no_load)
    monkeypatch.setattr("deft.eval.runner.evaluate", no_load)
    cases = [
        (["--data", str(tmp_path / "missing.jsonl")], "missing.jsonl"),
        (["--objectives", "nll,nosuch"], "nosuch"),
        (["--objectives", "nll,kd"], "teacher"),
        (["lr=-1"], "lr"),
        (["nosuch_option=1"], "nosuch_option"),
        (["--benchmark", "nosuchbench"], "nosuchbench"),
        (["--heldout", str(tmp_path / "nope.jsonl")], "nope.jsonl"),
        (["--seeds", "0,x"], "seeds"),
    ]
    base = _args(tiny_model_dir, figfont_records, tmp_path / "o")
    for extra, match in cases:
        args = list(base)
        for flag_value in [extra[i:i + 2] for i in range(0, len(extra), 2)] if extra[0].startswith("--") else []:
            i = args.index(flag_value[0]) if flag_value[0] in args else None
            if i is not None:
                args[i + 1] = flag_value[1]
            else:
                args += flag_value
        if not extra[0].startswith("--"):
            args += extra
        assert main(args) == 2, extra
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "o" / "runs").exists()


def test_an_interrupted_evaluation_with_other_settings_is_redone(tiny_model_dir, figfont_records, tmp_path, capsys):
    """An evaluation killed before it finished leaves samples but no results; when the comparison
    comes back with other evaluation settings, those samples are dropped and the evaluation redone
    (the evaluation folder's own guard would refuse them), and --resume says it will redo it."""
    args = _args(tiny_model_dir, figfont_records, tmp_path, "max_steps=1", "batch_size=2", "max_length=256",
                 "--no-base", objectives="nll")
    assert main(args) == 0
    folder = tmp_path / "eval" / "nll"
    for name in ("results.json", "inputs.json"):  # as after a kill: eval.json and generations.jsonl stay
        (folder / name).unlink()
    capsys.readouterr()
    changed = [a.replace("4", "5") if a == "4" else a for a in args]  # --max-new-tokens 4 -> 5
    assert main(changed + ["--resume"]) == 2
    assert "nll: evaluation (an unfinished evaluation with other settings)" in capsys.readouterr().err
    assert main(changed) == 0
    out = capsys.readouterr().out
    assert "nll: evaluation: redoing (an unfinished evaluation with other settings)" in out
    assert json.loads((folder / "results.json").read_text())["_config"]["max_new_tokens"] == 5
    # an evaluation interrupted with the same settings continues
    (folder / "results.json").unlink()
    (folder / "inputs.json").unlink()
    assert main(changed) == 0
    assert "redoing" not in capsys.readouterr().out
