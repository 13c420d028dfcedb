"""One optimizer step of ``deft train`` checked against an independent computation.

With SGD, learning rate 1, a constant schedule, no weight decay and no clipping, one step moves
every parameter by exactly ``-grad`` of the objective the trainer claims to minimise. That
gradient is computed here without any trainer code: the initial model's plain forward gives the
logits of each example on its own (no padding, no packing, no fused engine), ``deft.token_loss``
(``reduction='sum'``) gives each example's summed loss, and the normalisation is written out by
hand:

* ``tokens``: ``sum_i L_i / sum_i n_i`` over every example of the step (all micro-batches and
  processes);
* ``micro_batch``: the mean over micro-batches of ``sum_{i in mb} L_i / sum_{i in mb} n_i``
  (the reference implementation's scheme; with one example per micro-batch the grouping does
  not matter).

The step uses every example of the data file exactly once (examples = batch size x accumulation x
processes), so the data order does not change the expected value. The logged ``loss``,
``grad_norm`` and token statistics of step 1 are checked against the same computation.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deft import token_loss
from deft.train import load_config, train

RESPONSES = ["cat", "a much longer answer with many more words in it than the others",
             "dog house", "the quick brown fox jumps over the lazy dog twice"]


def _records(path: Path, n: int) -> Path:
    """``n`` records whose responses have clearly different token counts."""
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"Question {i}: say something.", "response": RESPONSES[i % 4]}) + "\n")
    return path


def _sgd_cfg(model_dir, data, out, **kw):
    base = dict(model=str(model_dir), data=str(data), output_dir=str(out), max_length=128, progress=False, seed=3,
                max_steps=1, lr=1.0, lr_scheduler="constant", warmup_ratio=0.0, weight_decay=0.0,
                max_grad_norm=0.0, optim="sgd")
    base.update(kw)
    return load_config(None, base)


def _examples(model_dir, data):
    from transformers import AutoTokenizer

    from deft.train.run import build_examples

    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = load_config(None, {"model": str(model_dir), "max_length": 128})
    return list(build_examples(cfg, tok, str(data), log=lambda *_: None))


def independent_step(model_dir, examples, objective, normalization="tokens"):
    """``(params, grads, logged)``: the initial parameters, the gradient of the step's objective
    and the values step 1 must log, from each example's plain logits (one example per forward)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.train()
    names, params = zip(*model.named_parameters())
    sums, counts, per_token = [], [], []
    for ex in examples:
        ids, labels = torch.tensor([ex["input_ids"]]), torch.tensor([ex["labels"]])
        logits = model(input_ids=ids).logits
        loss, stats = token_loss(logits[:, :-1], labels[:, 1:], objective, reduction="sum", return_stats=True)
        sums.append(loss)
        counts.append(stats["num_tokens"])
        per_token.append({k: v[stats["mask"]].double() for k, v in stats.items()
                          if k in ("p", "gate", "entropy", "focus")})
    tokens = sum(counts)
    if normalization == "tokens":
        value = torch.stack(sums).sum() / tokens
    else:  # one example per micro-batch: the mean of the examples' own means
        value = torch.stack([s / n for s, n in zip(sums, counts)]).mean()
    grads = torch.autograd.grad(value, params)
    cat = {k: torch.cat([t[k] for t in per_token]) for k in per_token[0]}
    logged = {"loss": float(value.detach()), "tokens": tokens,
              "input_tokens": sum(len(ex["input_ids"]) for ex in examples),
              "grad_norm": float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))),
              "mean_p": float(cat["p"].mean()), "mean_gate": float(cat["gate"].mean()),
              "mean_entropy": float(cat["entropy"].mean()),
              "frac_p_below_1e-3": float((cat["p"] < 1e-3).double().mean()),
              "frac_p_above_0.5": float((cat["p"] > 0.5).double().mean())}
    if "focus" in cat:
        logged["mean_focus"] = float(cat["focus"].mean())
    before = {n: p.detach().clone() for n, p in zip(names, params)}
    return before, dict(zip(names, grads)), logged


def check_step(out: Path, before: dict, grads: dict, logged: dict) -> None:
    """``before - after == grad`` for every parameter; step 1's metrics equal ``logged``."""
    from transformers import AutoModelForCausalLM

    after = dict(AutoModelForCausalLM.from_pretrained(out / "final", dtype=torch.float32).named_parameters())
    assert set(after) == set(before)
    scale = max(float(g.abs().max()) for g in grads.values())
    for name, g in grads.items():
        moved = before[name] - after[name].detach()
        torch.testing.assert_close(moved, g, rtol=2e-4, atol=2e-5 * scale, msg=lambda m: f"{name}: {m}")
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 1 and row["tokens"] == logged["tokens"] and row["input_tokens"] == logged["input_tokens"]
    for key in ("loss", "grad_norm", "mean_p", "mean_gate", "mean_entropy", "frac_p_below_1e-3", "frac_p_above_0.5",
                "mean_focus"):
        if key in logged:
            assert row[key] == pytest.approx(logged[key], rel=2e-5, abs=1e-7), key
        else:
            assert key not in row, key


@pytest.mark.parametrize("objective,batch_size,grad_accum", [
    ("nll", 4, 1), ("deft", 4, 1), ("nll", 2, 2), ("deft", 1, 4),
])
def test_one_sgd_step_moves_every_parameter_by_minus_the_gradient(tiny_model_dir, tmp_path, objective, batch_size,
                                                                   grad_accum):
    """Tokens normalisation: one and several micro-batches (of unequal token counts)."""
    data = _records(tmp_path / "data.jsonl", batch_size * grad_accum)
    examples = _examples(tiny_model_dir, data)
    assert len({sum(l != -100 for l in ex["labels"]) for ex in examples}) == len(examples)  # unequal counts
    before, grads, logged = independent_step(tiny_model_dir, examples, objective)
    out = tmp_path / "run"
    train(_sgd_cfg(tiny_model_dir, data, out, objective=objective, batch_size=batch_size, grad_accum=grad_accum),
          log=lambda *_: None)
    check_step(out, before, grads, logged)


def test_one_sgd_step_with_micro_batch_normalisation_is_the_mean_of_means(tiny_model_dir, tmp_path):
    """Two micro-batches of different token counts: the update is ``-grad((L_a/n_a + L_b/n_b) / 2)``,
    which differs from the tokens-normalised one."""
    data = _records(tmp_path / "data.jsonl", 2)
    examples = _examples(tiny_model_dir, data)
    before, grads, logged = independent_step(tiny_model_dir, examples, "deft", normalization="micro_batch")
    _, token_grads, _ = independent_step(tiny_model_dir, examples, "deft", normalization="tokens")
    name = next(iter(grads))
    assert not torch.allclose(grads[name], token_grads[name], rtol=1e-2)  # the two schemes differ here
    out = tmp_path / "run"
    train(_sgd_cfg(tiny_model_dir, data, out, objective="deft", batch_size=1, grad_accum=2,
                   loss_normalization="micro_batch"), log=lambda *_: None)
    check_step(out, before, grads, logged)


def _sgd_flags(model_dir, data, out, objective, *extra):
    return ["-m", "deft.cli.main", "train", "--model", str(model_dir), "--data", str(data), "--out", str(out),
            "--max-length", "128", "--seed", "3", "--no-progress", "--max-steps", "1", "--lr", "1",
            "--lr-scheduler", "constant", "--warmup-ratio", "0", "--weight-decay", "0", "--max-grad-norm", "0",
            "--optim", "sgd", "--objective", objective, *extra]


@pytest.mark.slow
@pytest.mark.parametrize("objective,normalization", [("nll", "tokens"), ("deft", "tokens"), ("deft", "micro_batch")])
def test_two_processes_one_sgd_step_is_minus_the_gradient(tiny_model_dir, tmp_path, objective, normalization):
    """2 processes (gloo) x 2 micro-batches x 1 example of unequal token counts: the step's
    objective over all 4 examples (tokens: one global token count; micro_batch: the mean of the
    4 per-micro-batch means, averaged over processes)."""
    data = _records(tmp_path / "data.jsonl", 4)
    examples = _examples(tiny_model_dir, data)
    before, grads, logged = independent_step(tiny_model_dir, examples, objective, normalization=normalization)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launched = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         *_sgd_flags(tiny_model_dir, data, out, objective, "--batch-size", "1", "--grad-accum", "2",
                     "--loss-normalization", normalization)],
        env=env, capture_output=True, text=True)
    assert launched.returncode == 0, launched.stderr[-3000:]
    check_step(out, before, grads, logged)
    assert math.isfinite(logged["loss"])


def test_a_resumed_sgd_step_is_minus_the_gradient_at_the_checkpoint(tiny_model_dir, tmp_path):
    """Resume anchored to an independent computation (the resume tests compare a resumed run with
    an uninterrupted one): a 2-step run checkpointed at step 1 is cut back to that checkpoint, as
    after a crash, its weights are perturbed (so a run that restarted from scratch, or resumed from
    anything but the checkpoint, would fail), and it is resumed; step 2 must move every parameter
    of the checkpoint's weights by ``-grad`` of the objective at those weights. Every step uses the
    same 4 examples (batch 4 of a 4-example file), so the data order cannot change the expected value."""
    import shutil

    from transformers import AutoModelForCausalLM

    data = _records(tmp_path / "data.jsonl", 4)
    examples = _examples(tiny_model_dir, data)
    out = tmp_path / "run"
    train(_sgd_cfg(tiny_model_dir, data, out, objective="deft", batch_size=4, max_steps=2, save_steps=1),
          log=lambda *_: None)
    checkpoint = out / "checkpoint-1"
    for name in ("final", "checkpoint-2", "summary.json"):  # as if killed just after checkpoint 1
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.05)
    model.save_pretrained(checkpoint)
    before, grads, _ = independent_step(checkpoint, examples, "deft")
    train(_sgd_cfg(tiny_model_dir, data, out, objective="deft", batch_size=4, max_steps=2, save_steps=1, resume=True),
          log=lambda *_: None)
    after = _final_params(out)
    scale = max(float(g.abs().max()) for g in grads.values())
    for name, g in grads.items():
        torch.testing.assert_close(before[name] - after[name].detach(), g, rtol=2e-4, atol=2e-5 * scale,
                                   msg=lambda m: f"{name}: {m}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # step 1 logged once, by the first run


def _final_params(out: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return dict(AutoModelForCausalLM.from_pretrained(out / "final", dtype=torch.float32).named_parameters())


@pytest.mark.parametrize("factor", [1 / 1.01, 2.0])
def test_a_trainer_whose_loss_is_off_by_a_constant_factor_fails_the_absolute_check(tiny_model_dir, tmp_path,
                                                                                  monkeypatch, factor):
    """The two breakages that the run-vs-run tests missed (the normalised loss divided by 1.01x the
    step's loss tokens, or multiplied by 2) move the SGD step by that factor, which ``check_step``
    must notice; the unbroken trainer passes the same check in the tests above."""
    from deft.train.trainer import DeftTrainer

    original = DeftTrainer.compute_loss

    def scaled_compute_loss(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        return (out[0] * factor, out[1]) if isinstance(out, tuple) else out * factor

    monkeypatch.setattr(DeftTrainer, "compute_loss", scaled_compute_loss)
    data = _records(tmp_path / "data.jsonl", 2)
    examples = _examples(tiny_model_dir, data)
    before, grads, logged = independent_step(tiny_model_dir, examples, "nll")
    out = tmp_path / "run"
    train(_sgd_cfg(tiny_model_dir, data, out, objective="nll", batch_size=1, grad_accum=2), log=lambda *_: None)
    with pytest.raises(AssertionError, match="are not close"):  # the parameters moved by factor x grad
        check_step(out, before, grads, logged)
