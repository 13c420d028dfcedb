"""One optimizer step computed without any trainer code, to check a training run against.

With SGD, learning rate 1, a constant schedule, no weight decay and no clipping, one step moves
every parameter by exactly ``-grad`` of the objective the trainer claims to minimise.
:func:`independent_step` computes that gradient from each example's plain logits (one example per
forward, no padding, no packing, no fused engine) with ``deft.token_loss`` and the normalisation
written out by hand; :func:`check_step` compares a finished run with it. Used by
``test_train_absolute.py`` (one process, DDP) and ``test_train_sharding.py`` (FSDP2, ZeRO-2/3).
"""

import json
from pathlib import Path

import pytest
import torch

from deft import token_loss
from deft.train import load_config

RESPONSES = ["cat", "a much longer answer with many more words in it than the others",
             "dog house", "the quick brown fox jumps over the lazy dog twice"]


def write_records(path: Path, n: int) -> Path:
    """``n`` records whose responses have clearly different token counts."""
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"Question {i}: say something.", "response": RESPONSES[i % 4]}) + "\n")
    return path


def sgd_config(model_dir, data, out, **kw):
    base = dict(model=str(model_dir), data=str(data), output_dir=str(out), max_length=128, progress=False, seed=3,
                max_steps=1, lr=1.0, lr_scheduler="constant", warmup_ratio=0.0, weight_decay=0.0,
                max_grad_norm=0.0, optim="sgd")
    base.update(kw)
    return load_config(None, base)


def tokenized_examples(model_dir, data):
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


def check_moved(final: Path, before: dict, grads: dict) -> None:
    """The model saved in ``final`` (loaded back as any user would) is ``before - grad``."""
    from transformers import AutoModelForCausalLM

    after = dict(AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).named_parameters())
    assert set(after) == set(before)
    scale = max(float(g.abs().max()) for g in grads.values())
    for name, g in grads.items():
        moved = before[name] - after[name].detach()
        torch.testing.assert_close(moved, g, rtol=2e-4, atol=2e-5 * scale, msg=lambda m: f"{name}: {m}")


def check_step(out: Path, before: dict, grads: dict, logged: dict) -> None:
    """``before - after == grad`` for every parameter; step 1's metrics equal ``logged``."""
    check_moved(out / "final", before, grads)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 1 and row["tokens"] == logged["tokens"] and row["input_tokens"] == logged["input_tokens"]
    for key in ("loss", "grad_norm", "mean_p", "mean_gate", "mean_entropy", "frac_p_below_1e-3", "frac_p_above_0.5",
                "mean_focus"):
        if key in logged:
            assert row[key] == pytest.approx(logged[key], rel=2e-5, abs=1e-7), key
        else:
            assert key not in row, key


