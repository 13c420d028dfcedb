"""Checking the fused loss's inputs and turning them into a :class:`~deft.fused.context.Plan`:
ignored positions dropped, extra inputs routed by their need (:mod:`deft.objectives.needs`),
call-wide statistics computed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..objectives import Objective
from .common import (
    STATISTIC_PROVIDERS, check_aligned, check_devices, check_finite, check_labels, check_tensor, check_values,
    gather_inputs, needed,
)
from .compiled import IMPL_ENV, resolve_impl
from .context import FrozenRows, Plan, logits_into

__all__ = ["Call", "prepare", "auto_chunk_size", "loss_token_logp"]

_MIN_CHUNK, _MAX_CHUNK = 16, 8192


def auto_chunk_size(num_tokens: int, hidden_size: int, vocab_size: int) -> int:
    """Rows per chunk: one fp32 logits chunk ``[c, V]`` of about half the LM head's fp32 size,
    bounded to 32-512 MiB, so the chunk never dominates the gradient buffers while the
    products stay large enough to run at matrix-multiply speed. Every objective kind uses it:
    distribution objectives keep their extra ``[rows, V]`` tensors small with row sub-blocks
    (:func:`deft.fused.frozen.sub_block_rows`), not with a smaller chunk."""
    head_bytes = vocab_size * hidden_size * 4
    budget = min(max(head_bytes // 2, 32 << 20), 512 << 20)
    rows = budget // (vocab_size * 4)
    rows = max(_MIN_CHUNK, min(_MAX_CHUNK, rows - rows % 16 if rows >= 32 else rows))
    return int(max(1, min(rows, max(num_tokens, 1))))


def loss_token_logp(plan: Plan, h, w, b) -> torch.Tensor:
    """``log p`` ``[M]`` of every loss token, detached fp32: one pass over the logits in the
    plan's chunks and logits dtype (the loss pass's logits), keeping only ``[chunk]`` vectors.
    What the :data:`~deft.fused.common.STATISTIC_PROVIDERS` read."""
    m = h.shape[0]
    out = torch.empty(m, dtype=torch.float32, device=h.device)
    buf = torch.empty(min(plan.chunk_size, m), w.shape[0], dtype=plan.logits_dtype, device=h.device)
    with torch.no_grad():
        for s in range(0, m, plan.chunk_size):
            e = min(s + plan.chunk_size, m)
            z = logits_into(h[s:e], w, b, out=buf[: e - s])
            logP = torch.ops.aten._log_softmax.out(z, -1, False, out=z) if z.dtype == torch.float32 else \
                torch.log_softmax(z, -1, dtype=torch.float32)
            out[s:e] = logP.gather(-1, plan.labels[s:e].unsqueeze(-1)).squeeze(-1)
    return out


@dataclass
class Call:
    """A checked call: loss-token hidden states ``[M, H]``, the plan, and how to scatter per-token
    results back (``index [M]`` into the flattened labels, ``keep`` mask, labels' ``shape``)."""

    hidden: torch.Tensor
    plan: Plan
    index: torch.Tensor
    keep: torch.Tensor
    shape: torch.Size


def _check_shapes(hidden, weight, labels, bias) -> None:
    check_tensor("hidden", hidden)
    check_tensor("weight", weight)
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden [N, H] and weight [V, H] must share H: got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must have one dtype; cast one of them")
    check_tensor("labels", labels, integer=True)
    if tuple(hidden.shape[:-1]) != tuple(labels.shape):
        raise ValueError(f"hidden [N, H] must align with labels [N]: got {tuple(hidden.shape)} and "
                         f"{tuple(labels.shape)}")
    if bias is not None:
        check_tensor("bias", bias)
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")


def _frozen(name: str, given: dict, labels: torch.Tensor, vocab: int, index, all_kept: bool) -> FrozenRows:
    """A frozen model's rows for need ``name``, checked against the labels and the vocabulary;
    its hidden states are viewed, never copied (a non-contiguous one is indexed per chunk)."""
    hidden, weight = given[f"{name}_hidden"], given[f"{name}_weight"]
    bias = given.get(f"{name}_bias")
    for arg, t in ((f"{name}_hidden", hidden), (f"{name}_weight", weight)):
        check_tensor(arg, t)
    if tuple(hidden.shape[:-1]) != tuple(labels.shape) or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"{name}_hidden [N, H'] must align with labels and {name}_weight [V, H']: got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    if weight.shape[0] != vocab:
        raise ValueError(f"the {name} model's vocabulary ({weight.shape[0]}) differs from the model's ({vocab}); "
                         "a reference or teacher must share the tokenizer")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"{name}_hidden ({hidden.dtype}) and {name}_weight ({weight.dtype}) must have one dtype")
    size = labels.numel()
    hidden, weight = hidden.detach(), weight.detach()
    bias = None if bias is None else bias.detach()
    try:
        return FrozenRows(hidden.view(size, hidden.shape[-1]), weight, bias, None if all_kept else index)
    except RuntimeError:  # e.g. hidden[:, :-1] of a batch: index the leading dims per chunk
        rows = torch.arange(size, device=index.device) if all_kept else index
        return FrozenRows(hidden, weight, bias, torch.unravel_index(rows, tuple(labels.shape)))


def _check_values(obj, given, hidden, weight, bias, token_weights) -> None:
    """The data checks of ``check_inputs=True``: one reduction per input, one synchronisation."""
    tensors = {"hidden": hidden, "weight": weight, "bias": bias, **given, "token_weights": token_weights}
    check_finite(tensors, allow_neg_inf=[key for key in tensors if key.endswith("bias")])
    check_values(obj, given, token_weights)


def prepare(obj: Objective, hidden, weight, labels, *, bias, ignore_index, reduction, chunk_size, named: dict,
            inputs: Optional[dict], token_weights, want_stats: bool, check_inputs: bool, impl=None) -> Call:
    """Check every input (shapes, dtypes, devices always; values when ``check_inputs``) and
    build the plan (``impl``: see :func:`~deft.fused.compiled.resolve_impl`); raises a one-line
    ``ValueError`` naming the argument on bad input."""
    _check_shapes(hidden, weight, labels, bias)
    given = gather_inputs(obj, "fused", named, inputs)
    check_aligned("token_weights", token_weights, labels.shape)
    for need in needed(obj):
        if need.source in ("label_logprobs", "batch"):
            check_aligned(need.name, given[need.name], labels.shape)
    check_devices({"hidden": hidden, "weight": weight, "labels": labels, "bias": bias,
                   "token_weights": token_weights, **given})
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if check_inputs:
        _check_values(obj, given, hidden, weight, bias, token_weights)

    vocab, shape, size = weight.shape[0], labels.shape, labels.numel()
    flat_labels = labels.reshape(-1)
    keep = flat_labels != ignore_index
    check_labels(flat_labels, vocab, keep)
    index = keep.nonzero().squeeze(-1)
    all_kept = index.numel() == size

    def pick(t):
        t = t.reshape(size, *t.shape[labels.dim():])
        return t if all_kept else t.index_select(0, index)

    h = pick(hidden)
    plan = Plan(
        objective=obj, labels=pick(labels).long(), reduction=reduction,
        chunk_size=int(chunk_size) if chunk_size else auto_chunk_size(h.shape[0], weight.shape[1], vocab),
        frozen={need.name: _frozen(need.name, given, labels, vocab, index, all_kept) for need in needed(obj, "model")},
        token_inputs={need.field: pick(given[need.name]).detach().float() for need in needed(obj)
                      if need.source in ("label_logprobs", "batch")},
        token_weights=None if token_weights is None else pick(token_weights).detach().float(),
        want_stats=want_stats, weight_dtype=weight.dtype, bias_dtype=None if bias is None else bias.dtype,
        impl=resolve_impl(impl, hidden.device), strict=(impl or os.environ.get(IMPL_ENV)) == "compile",
    )
    statistics = needed(obj, "statistic")
    if statistics:
        logp = loss_token_logp(plan, h.detach(), weight.detach(), None if bias is None else bias.detach())
        plan.statistics.update({need.field: STATISTIC_PROVIDERS[need.name](logp) for need in statistics})
    return Call(h, plan, index, keep, shape)
