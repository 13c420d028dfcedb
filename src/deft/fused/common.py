"""Input checks, needs, reductions and statistics shared by the plain and the fused loss."""

from __future__ import annotations

from typing import Iterable, Optional

import torch

from ..objectives import NEEDS, Objective, Tokens, parse_objective
from ..objectives.needs import missing_error

__all__ = [
    "REDUCTIONS", "resolve_objective", "gather_inputs", "needed", "check_labels", "check_aligned", "check_tensor",
    "check_devices", "check_finite", "check_values", "reduce", "scatter_back", "gate_terms_with_gate",
    "field_rows", "is_zero", "masked_row_dot", "STATISTIC_PROVIDERS", "batch_mean_p",
]

REDUCTIONS = ("none", "sum", "mean")
STAT_KEYS = ("p", "gate", "focus", "entropy")


def resolve_objective(objective, reduction: str) -> Objective:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return parse_objective(objective)


def needed(obj: Objective, source: Optional[str] = None) -> list:
    """The objective's :class:`~deft.objectives.Need` entries (of one ``source`` if given)."""
    return [NEEDS[name] for name in sorted(obj.needs) if source is None or NEEDS[name].source == source]


def gather_inputs(obj: Objective, engine: str, named: dict, extra: Optional[dict]) -> dict:
    """The extra inputs given to ``engine`` (``"plain"`` / ``"fused"``): the named keyword
    arguments that are set plus ``extra`` (the ``inputs=`` dict), keyed by argument name.

    Raises the need's one-line error when the objective needs an input that is not given, and
    names the valid arguments when ``extra`` holds an unknown one.
    """
    given = {key: value for key, value in named.items() if value is not None}
    for key, value in (extra or {}).items():
        valid = {arg for need in NEEDS.values() for arg in need.arguments(engine)}
        valid |= {f"{need.name}_bias" for need in NEEDS.values() if need.source == "model" and engine == "fused"}
        if key not in valid:
            raise ValueError(f"inputs: unknown input '{key}'; valid inputs: {', '.join(sorted(valid))}")
        if value is not None:
            given[key] = value
    for need in needed(obj):
        if any(arg not in given for arg in need.arguments(engine)):
            raise missing_error(obj.spec, need, engine)
    return given


def check_tensor(name: str, value, *, integer: bool = False) -> None:
    """``value`` must be a tensor (of an integer dtype for labels, floating otherwise)."""
    if not isinstance(value, torch.Tensor):
        hint = "; convert it with torch.tensor(...)" if isinstance(value, (list, tuple)) else ""
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}{hint}")
    if integer and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise ValueError(f"{name} must be an integer tensor of token ids, got {value.dtype}")
    if not integer and not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {value.dtype}")


def check_devices(tensors: dict) -> None:
    """Every given tensor must be on one device."""
    devices = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor)}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"inputs are on different devices ({listed}); move them to one device")


def _sum_proves_finite(t: torch.Tensor, neg_inf_allowed: bool) -> torch.Tensor:
    """A 0-dim bool that is True only if ``t`` has no NaN or +inf (nor -inf unless allowed): a
    NaN or +inf makes the sum NaN or +inf, a -inf makes it -inf or NaN. One read of ``t``, no
    temporary; False also when a finite sum overflows (the exact check then decides)."""
    total = t.sum(dtype=torch.float32) if t.dtype in (torch.float16, torch.bfloat16) else t.sum()
    ok = torch.isfinite(total)
    return ok | (total == float("-inf")) if neg_inf_allowed else ok


def check_finite(tensors: dict, allow_neg_inf: Iterable[str] = ()) -> None:
    """No NaN or +inf in any of ``tensors`` (name -> tensor or None), nor -inf except in those
    named in ``allow_neg_inf`` (logits and biases: a masked vocabulary entry). Once per call: one
    sum per tensor and a single host synchronisation for all of them; the exact elementwise
    check only for a tensor whose sum is not finite."""
    allowed = set(allow_neg_inf)
    names = [name for name, t in tensors.items() if t is not None]
    if not names:
        return
    flags = [_sum_proves_finite(tensors[name], name in allowed) for name in names]
    if bool(torch.stack([f.to(flags[0].device) for f in flags]).all()):
        return
    for name, ok in zip(names, flags):
        if bool(ok):
            continue
        t = tensors[name]
        bad = (torch.isnan(t) | (t == float("inf"))) if name in allowed else ~torch.isfinite(t)
        count = int(bad.sum())
        if count:
            what = "NaN or +inf" if name in allowed else "NaN or infinite"
            raise ValueError(f"{name} has {count} {what} value(s); check the model and the inputs "
                             "(check_inputs=False skips this check)")


def check_values(obj: Objective, given: dict, token_weights: Optional[torch.Tensor]) -> None:
    """Range checks of per-token inputs: weights >= 0, log-probabilities <= 0."""
    if token_weights is not None and bool((token_weights < 0).any()):
        raise ValueError(f"token_weights has negative values (min {float(token_weights.min()):g}); "
                         "weights must be >= 0")
    for need in needed(obj, "label_logprobs"):
        value = given[need.name]
        if bool((value > 1e-5).any()):  # rounding of a computed log-probability may give +1e-7
            raise ValueError(f"{need.name} must be log-probabilities (<= 0), got a maximum of {float(value.max()):g}; "
                             "pass log p, not p")


def check_labels(labels: torch.Tensor, vocab_size: int, keep: torch.Tensor) -> None:
    """Labels at loss positions must index the vocabulary."""
    check_tensor("labels", labels, integer=True)
    kept = labels[keep]
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= vocab_size):
        bad = kept[(kept < 0) | (kept >= vocab_size)][0].item()
        raise ValueError(f"label {bad} is outside the vocabulary [0, {vocab_size}) and is not the ignore index")


def check_aligned(name: str, tensor: Optional[torch.Tensor], shape: Iterable[int]) -> None:
    if tensor is None:
        return
    check_tensor(name, tensor)
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have the labels' shape {tuple(shape)}, got {tuple(tensor.shape)}")


def batch_mean_p(logp: torch.Tensor) -> torch.Tensor:
    """Mean ``sg(p)`` over the call's loss tokens (``cayley_floor``'s batch floor), 0 without any."""
    return logp.exp().mean() if logp.numel() else logp.new_zeros(())


# need name -> function(log p [M] of every loss token of the call, detached fp32) computing a
# "statistic" need; both engines call it (the fused one after one logits pass over the chunks)
STATISTIC_PROVIDERS = {"batch": batch_mean_p}


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


def field_rows(value, n: int, like: torch.Tensor) -> torch.Tensor:
    """A :class:`~deft.objectives.CrossEntropyTargets` field (float or ``[n]`` tensor) as a
    detached fp32 ``[n]``."""
    if isinstance(value, torch.Tensor):
        # a copy: the field may be a view of a workspace the fused engine later overwrites
        return value.detach().float().expand(n).clone()
    return torch.full((n,), float(value), dtype=torch.float32, device=like.device)


def is_zero(value) -> bool:
    """A :class:`~deft.objectives.CrossEntropyTargets` field given as the number 0 (an absent term)."""
    return not isinstance(value, torch.Tensor) and float(value) == 0.0


def masked_row_dot(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``Σ_{v: q_v > 0} q_v x_v`` per row ``[n]``: where ``q`` is 0 the term is 0 even if ``x``
    is ``-inf`` (a masked vocabulary entry), as in ``0 log 0 = 0``."""
    return torch.where(q > 0, q * x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(-1)
