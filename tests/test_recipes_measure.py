"""Tests of deft.recipes.measure: token-level learning / forgetting measurements of a comparison's
models (see :mod:`deft.eval.heldout`), each saved with the hash of what it measured so that it is
redone only when its model or inputs change."""

import json

import pytest

from deft.analysis.intervals import paired_bootstrap
from deft.cli.main import main

pytestmark = pytest.mark.usefixtures("deft_steps_in_process")  # steps in this process (conftest)


def test_compare_with_seeds_and_heldout_end_to_end(tiny_model_dir, figfont_records, tmp_path, capsys):
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("\n".join(figfont_records.read_text().splitlines()[:4]) + "\n")
    args = ["compare", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--objectives", "nll,deft",
            "--heldout", str(heldout), "--seeds", "0,1", "--out", str(tmp_path / "s"),
            "--benchmark", "figfont", "--n", "3", "--max-new-tokens", "4",
            "max_steps=2", "batch_size=4", "max_length=256", "lr=1e-2", "warmup_ratio=0"]
    assert main(args) == 0
    out = tmp_path / "s"
    assert (out / "runs" / "deft" / "seed1" / "final").is_dir()
    rows = {r.split(",")[0]: r.split(",") for r in (out / "results.csv").read_text().splitlines()}
    head = rows["method"]
    assert list(rows)[1] == "Base"
    for col in ("heldout_nll", "heldout_mean_p", "drift_kl", "retained_nll", "seeds"):
        assert col in head
    seeds, nll, ci = head.index("seeds"), head.index("heldout_nll"), head.index("heldout_nll ci95")
    assert rows["nll"][seeds] == "2" and rows["Base"][seeds] == "1"
    # training on figfont records lowers the NLL of held-out figfont responses below the base model's
    assert float(rows["nll"][nll]) < float(rows["Base"][nll]) and float(rows["deft"][nll]) < float(rows["Base"][nll])
    assert rows["nll"][ci] and not rows["Base"][ci]  # an interval over 2 seeds; none for the base model
    per_seed = [json.loads((out / "eval" / "nll" / f"seed{s}" / "heldout.json").read_text())["metrics"]
                for s in (0, 1)]
    assert float(rows["nll"][nll]) == pytest.approx(sum(m["heldout_nll"] for m in per_seed) / 2, rel=1e-5)
    assert 0 <= per_seed[0]["learned"] <= 1
    # content tokens lead the token-level columns; each cell is the mean of the seeds' content metrics
    assert head[head.index("Avg") + 1:head.index("Avg") + 3] == ["content_nll", "content_mean_p"]
    assert float(rows["nll"][head.index("content_nll")]) == pytest.approx(
        sum(m["content_nll"] for m in per_seed) / 2, rel=1e-5)
    assert per_seed[0]["end_tokens"] == 4 and per_seed[0]["content_tokens"] > 4  # one <|im_end|> per record
    md = (out / "results.md").read_text()
    assert "Paired difference to `nll`" in md and "| deft |" in md
    # per problem: each objective's figfont EM per problem, averaged over its seeds, paired with nll's
    paired = json.loads((out / "table.json").read_text())["paired"]
    cell = paired["rows"]["deft"]["figfont"]
    assert (cell["n"], cell["seeds"], cell["scorer"]) == (3, 2, "exact") and set(paired["rows"]) == {"deft"}

    def per_problem(method):
        by_id = {}
        for s in (0, 1):
            for line in (out / "eval" / method / f"seed{s}" / "generations.jsonl").read_text().splitlines():
                rec = json.loads(line)
                by_id.setdefault(rec["id"], []).append(rec["scores"]["exact"])
        return by_id

    expected = paired_bootstrap(per_problem("deft"), per_problem("nll"), n_resamples=paired["n_resamples"])
    assert (cell["mean"], cell["low"], cell["high"], cell["p"]) == (expected.mean, expected.low, expected.high,
                                                                    expected.p)
    assert "Paired per problem (bootstrap) difference to `nll`" in md
    assert f"| deft | {100 * expected.mean:+.2f} [{100 * expected.low:+.2f}, {100 * expected.high:+.2f}]" in md


def test_held_out_jobs_saved_before_the_token_classes_are_redone(tiny_model_dir, figfont_records, tmp_path):
    """The held-out jobs' settings name the content / end-of-turn metrics, so a measurement saved
    without them (another hash) is redone rather than reused; forgetting-only jobs are unchanged."""
    from deft.config import load_config
    from deft.recipes.compare import CompareConfig, plan_runs

    base = dict(model=str(tiny_model_dir), data=str(figfont_records), objectives="nll", out=str(tmp_path))
    plan = plan_runs(load_config(CompareConfig, None, dict(base, heldout=str(figfont_records))))
    assert all(job.settings["token_classes"] is True and job.settings["per_record"] is True
               for job in plan["heldout"].values())
    plan = plan_runs(load_config(CompareConfig, None, base))
    assert plan["heldout"] and all("token_classes" not in job.settings and "per_record" not in job.settings
                                   for job in plan["heldout"].values())


def test_eval_batch_size_reaches_every_evaluation_and_its_hash(tiny_model_dir, figfont_records, tmp_path):
    """--eval-batch-size is an evaluation setting (greedy answers may differ with the batch in the last
    bits): it is passed to every evaluation and changes their hashes, not the training runs'."""
    from deft.config import load_config
    from deft.recipes.compare import CompareConfig, plan_runs

    base = dict(model=str(tiny_model_dir), data=str(figfont_records), objectives="nll", out=str(tmp_path),
                benchmark="figfont")
    default = plan_runs(load_config(CompareConfig, None, base))
    batched = plan_runs(load_config(CompareConfig, None, dict(base, eval_batch_size="32")))
    assert all("batch_size" not in job.settings["eval"] for job in default["eval"].values())
    assert all(job.settings["eval"]["batch_size"] == 32 for job in batched["eval"].values())
    assert {k: j.hash for k, j in default["eval"].items()}.keys() == batched["eval"].keys()
    assert all(default["eval"][k].hash != batched["eval"][k].hash for k in default["eval"])
    assert [j.hash for *_, j, _ in default["train"]] == [j.hash for *_, j, _ in batched["train"]]
    with pytest.raises(Exception, match="eval_batch_size"):
        load_config(CompareConfig, None, dict(base, eval_batch_size="0"))
