"""Input checks, reductions and statistics shared by the plain and the fused loss."""

from __future__ import annotations

from typing import Optional

import torch

from ..objectives import Objective, Tokens, parse_objective

REDUCTIONS = ("none", "sum", "mean")
STAT_KEYS = ("p", "gate", "focus", "entropy")


def resolve_objective(objective, reduction: str) -> Objective:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return parse_objective(objective)


def check_needs(obj: Objective, *, ref: bool, teacher: bool, old: bool) -> None:
    """Raise a clear error when an objective's extra input is missing."""
    missing = []
    if "ref" in obj.needs and not ref:
        missing.append("reference-model logits (ref_logits, or ref_hidden + ref_weight)")
    if "teacher" in obj.needs and not teacher:
        missing.append("teacher logits (teacher_logits, or teacher_hidden + teacher_weight)")
    if "old_logprobs" in obj.needs and not old:
        missing.append("old-policy log-probabilities of the labels (old_logprobs)")
    if missing:
        raise ValueError(f"objective '{obj.spec}' needs {' and '.join(missing)}")


def check_labels(labels: torch.Tensor, vocab_size: int, keep: torch.Tensor) -> None:
    """Labels at loss positions must index the vocabulary."""
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    kept = labels[keep]
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= vocab_size):
        bad = kept[(kept < 0) | (kept >= vocab_size)][0].item()
        raise ValueError(f"label {bad} is outside the vocabulary [0, {vocab_size}) and is not the ignore index")


def check_aligned(name: str, tensor: Optional[torch.Tensor], shape: torch.Size) -> None:
    if tensor is not None and tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have the labels' shape {tuple(shape)}, got {tuple(tensor.shape)}")


def reduce(per_token: torch.Tensor, count: int, reduction: str) -> torch.Tensor:
    """``sum`` over loss tokens, or ``mean`` = sum / count (0 when there are none)."""
    total = per_token.sum()
    if reduction == "mean":
        return total / max(count, 1)
    return total


def scatter_back(values: torch.Tensor, index: torch.Tensor, size: int, shape) -> torch.Tensor:
    """Place per-loss-token values ``[n]`` at their positions in a zero tensor of ``shape``."""
    out = values.new_zeros(size)
    out = out.index_copy(0, index, values)
    return out.reshape(shape)


def gate_terms_with_gate(obj: Objective, tokens: Tokens):
    """Evaluate a gate objective on a fresh leaf ``logp`` and return ``(terms, gate)``.

    The gate ``s = -dL/dlogp`` (paper Eq. 29) is obtained by differentiating the ``[n]`` loss
    vector only; the engines never differentiate through ``[n, V]`` logits for gate objectives.
    """
    leaf = tokens.logp.detach().requires_grad_(True)
    view = tokens.with_logp(leaf)
    with torch.enable_grad():
        terms = obj.gate_terms(view)
        if terms.loss.requires_grad:
            (grad,) = torch.autograd.grad(terms.loss.sum(), leaf)
        else:  # e.g. every token masked out
            grad = torch.zeros_like(leaf)
    return terms, -grad


def target_rows(value, n: int, like: torch.Tensor) -> torch.Tensor:
    """A :class:`~deft.objectives.Target` field (float or ``[n]`` tensor) as a detached fp32 ``[n]``."""
    if isinstance(value, torch.Tensor):
        # a copy: the field may be a view of a workspace the fused engine later overwrites
        return value.detach().float().expand(n).clone()
    return torch.full((n,), float(value), dtype=torch.float32, device=like.device)


def is_zero(value) -> bool:
    """A :class:`~deft.objectives.Target` field given as the number 0 (a term that is absent)."""
    return not isinstance(value, torch.Tensor) and float(value) == 0.0


def masked_row_dot(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``Σ_{v: q_v > 0} q_v x_v`` per row ``[n]``: where ``q`` is 0 the term is 0 even if ``x``
    is ``-inf`` (a masked vocabulary entry), as in ``0 log 0 = 0``."""
    return torch.where(q > 0, q * x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(-1)
