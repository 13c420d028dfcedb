"""Tests of deft.recipes.measure: token-level learning / forgetting measurements of a comparison's
models (see :mod:`deft.eval.heldout`), each saved with the hash of what it measured so that it is
redone only when its model or inputs change."""

import json

import pytest

from deft.cli.main import main


def test_compare_with_seeds_and_heldout_end_to_end(tiny_model_dir, figfont_records, tmp_path, capsys):
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("\n".join(figfont_records.read_text().splitlines()[:4]) + "\n")
    args = ["compare", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--objectives", "nll,deft",
            "--heldout", str(heldout), "--seeds", "0,1", "--out", str(tmp_path / "s"),
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
    md = (out / "results.md").read_text()
    assert "Paired difference to `nll`" in md and "| deft |" in md
