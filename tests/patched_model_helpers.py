"""Helpers shared by test_model_fused_forward.py, test_model_head.py and test_model_parts.py."""

from __future__ import annotations

import torch

import deft


def examples(n=4, t=10, vocab=97, seed=0, prompt=(3, 5, 2, 6)):
    """``n`` examples of ``t`` tokens whose first ``prompt[i]`` tokens carry no loss, so the
    examples have different loss-token counts."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        ids = torch.randint(0, vocab, (t,), generator=g)
        labels = ids.clone()
        labels[: prompt[i % len(prompt)]] = -100
        rows.append({"input_ids": ids, "attention_mask": torch.ones(t, dtype=torch.long), "labels": labels})
    return rows


def stacked(rows):
    return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}


def mean_loss(model, batch, objective):
    """The objective's mean over every loss token of ``batch``, from the model's own logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return deft.token_loss(logits[:, :-1], batch["labels"][:, 1:], objective, reduction="mean")
