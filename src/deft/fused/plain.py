"""The plain full-logits loss: every objective from materialised logits, by autograd.

This is the oracle the fused engine is tested against and the fallback for callers that
already hold logits.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..objectives import CrossEntropyTargets, Dists, Tokens
from ..objectives.base import row_entropy
from .common import (
    STATISTIC_PROVIDERS, check_aligned, check_devices, check_finite, check_labels, check_tensor, check_values,
    field_rows, gate_terms_with_gate, gather_inputs, is_zero, masked_row_dot, needed, reduce, resolve_objective,
    scatter_back,
)

__all__ = ["token_loss", "target_loss"]


def _check(obj, logits, labels, given, token_weights, check_inputs) -> None:
    check_tensor("logits", logits)
    check_tensor("labels", labels, integer=True)
    if logits.dim() < 1 or tuple(logits.shape[:-1]) != tuple(labels.shape):
        raise ValueError(f"logits [..., V] must align with labels [...]: got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    for need in needed(obj):
        for arg in need.arguments("plain"):
            if need.source == "model":
                check_tensor(arg, given[arg])
                if tuple(given[arg].shape) != tuple(logits.shape):
                    raise ValueError(f"{arg} must have the logits' shape {tuple(logits.shape)} (same vocabulary), "
                                     f"got {tuple(given[arg].shape)}")
            else:
                check_aligned(arg, given[arg], labels.shape)
    check_aligned("token_weights", token_weights, labels.shape)
    check_devices({"logits": logits, "labels": labels, "token_weights": token_weights, **given})
    if check_inputs:
        tensors = {"logits": logits, **given, "token_weights": token_weights}
        check_finite(tensors, allow_neg_inf=[key for key in tensors if key.endswith("logits")])  # -inf: masked entry
        check_values(obj, given, token_weights)


def _needs_inputs(obj, given: dict, pick) -> dict:
    """Need field -> value on the loss tokens: log-distributions of frozen models, per-token tensors."""
    out = {}
    for need in needed(obj):
        if need.source == "model" and obj.kind == "gate":
            continue  # gate objectives see log p only, in both engines
        if need.source == "model":
            out[need.field] = torch.log_softmax(pick(given[f"{need.name}_logits"]).detach().float(), -1)
        elif need.source != "statistic":
            out[need.field] = pick(given[need.name]).detach().float()
    return out


def token_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    objective="deft",
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    ref_logits: Optional[torch.Tensor] = None,
    teacher_logits: Optional[torch.Tensor] = None,
    old_logprobs: Optional[torch.Tensor] = None,
    token_weights: Optional[torch.Tensor] = None,
    inputs: Optional[dict] = None,
    return_stats: bool = False,
    check_inputs: bool = True,
):
    """Token-level SFT loss of ``objective`` from logits.

    Args:
        logits: ``[..., V]`` (fp32, bf16 or fp16; computed in fp32).
        labels: ``[...]`` integer tensor aligned with ``logits`` (no shift inside, like
            ``F.cross_entropy``); positions equal to ``ignore_index`` contribute nothing.
        objective: a spec string such as ``"deft"`` or ``"power:alpha=0.5"``, or an
            :class:`~deft.objectives.Objective`; see :func:`deft.list_objectives`.
        reduction: ``"none"`` (per-token ``[...]``, 0 at ignored positions), ``"sum"``, or
            ``"mean"`` (sum divided by ``num_tokens``; 0 when there are none).
        ref_logits, teacher_logits: ``[..., V]`` logits of a frozen reference model / teacher
            (``sft_kl``, ``asft`` / ``kd``, ``kd_hybrid``, ``target_sft``); never differentiated.
        old_logprobs: ``[...]`` old-policy log-probabilities of the labels (``psft``), <= 0.
        token_weights: ``[...]`` weights >= 0 multiplying each token's loss (per-example weights
            broadcast over the example's tokens).
        inputs: any other input a need asks for (:data:`deft.objectives.NEEDS`), by argument
            name: ``<need>_logits [..., V]`` for a frozen model, ``<need> [...]`` per token.
        return_stats: also return a dict of per-token ``[...]`` tensors ``p``, ``gate`` (``s`` in
            ``dL/dz_y = -s (1 - p)``; for distribution objectives the effective value
            ``-g_y / (1 - p)``), ``entropy``, ``focus`` (objectives with a focus index only),
            ``mask`` (loss positions) and the integer ``num_tokens``: the denominator of
            ``"mean"``, i.e. the loss tokens, or the selected tokens of an objective normalised by
            them (the reference aliases ``OnlyTopP-τ``, ``OnlyBottomP-τ``, ``OnlyTopLogP-τ``,
            ``OnlyBottomLogP-τ``; the native ``obj[p>=τ]`` counts every loss token). It is 0
            when every label is ignored: divide a sum by ``max(stats["num_tokens"], 1)``.
        check_inputs: check values before any work: no NaN or +inf in the logits (``-inf``, a
            masked vocabulary entry, is allowed) or the other inputs, ``token_weights >= 0``,
            log-probabilities ``<= 0``. Costs one ``isfinite`` reduction per input. Shapes,
            dtypes, devices and label types are always checked.

    Returns:
        The loss, or ``(loss, stats)`` with ``return_stats=True``.
    """
    obj = resolve_objective(objective, reduction)
    named = dict(ref_logits=ref_logits, teacher_logits=teacher_logits, old_logprobs=old_logprobs)
    given = gather_inputs(obj, "plain", named, inputs)
    _check(obj, logits, labels, given, token_weights, check_inputs)

    vocab = logits.shape[-1]
    shape, size = labels.shape, labels.numel()
    flat_labels = labels.reshape(-1)
    keep = flat_labels != ignore_index
    check_labels(flat_labels, vocab, keep)
    index = keep.nonzero().squeeze(-1)
    y = flat_labels.index_select(0, index).long()
    z = logits.reshape(-1, vocab).index_select(0, index).float()

    def pick(t):
        return t.reshape(-1, *t.shape[labels.dim():]).index_select(0, index)

    extra = _needs_inputs(obj, given, pick)
    lse = torch.logsumexp(z, dim=-1)
    statistics = needed(obj, "statistic")
    if statistics:  # call-wide, from every loss token's log p: the fused engine's providers
        logp_all = (z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse).detach()
        extra.update({need.field: STATISTIC_PROVIDERS[need.name](logp_all) for need in statistics})
    terms = target = tokens = None
    if obj.kind == "gate":
        logp = z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
        tokens = Tokens(logp, z, lse, inputs=extra)
        terms = obj.gate_terms(tokens)
        per_token = terms.loss
    elif obj.kind == "autograd":
        terms = obj.autograd_terms(Dists(z.detach(), lse.detach(), y, logP=z - lse.unsqueeze(-1), inputs=extra))
        per_token = terms.loss
    else:
        target = obj.dist_target(Dists(z.detach(), lse.detach(), y, inputs=extra))
        per_token = target_loss(target, z - lse.unsqueeze(-1), y)
    weights = None if token_weights is None else pick(token_weights).float()
    if weights is not None:
        per_token = per_token * weights
    count = index.numel()
    if obj.normalizer == "selected":
        count = int(obj.selected((z.detach().gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse.detach()).exp()).sum())

    if reduction == "none":
        loss = scatter_back(per_token, index, size, shape)
    else:
        loss = reduce(per_token, count, reduction)
    if not return_stats:
        return loss
    stats = _stats(obj, z.detach(), lse.detach(), y, tokens, terms, target, extra, weights)
    stats = {key: scatter_back(value, index, size, shape) for key, value in stats.items()}
    stats["mask"] = keep.reshape(shape)
    stats["num_tokens"] = int(count)
    return loss, stats


def _stats(obj, z, lse, y, tokens, terms, target, extra, weights) -> dict:
    """Per-loss-token ``p``, ``gate``, ``entropy`` (and ``focus``) ``[n]``, by autograd on a
    fresh leaf for distribution objectives."""
    with torch.no_grad():
        p = (z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse).exp()
        if obj.kind == "gate":
            _, gate = gate_terms_with_gate(obj, tokens)
        else:
            with torch.enable_grad():
                leaf = z.clone().requires_grad_(True)
                logP_leaf = leaf - torch.logsumexp(leaf, -1, keepdim=True)
                if obj.kind == "autograd":
                    leaf_terms = obj.autograd_terms(Dists(z, lse, y, logP=logP_leaf, inputs=extra))
                    (g,) = torch.autograd.grad(leaf_terms.loss.sum(), leaf)
                else:
                    (g,) = torch.autograd.grad(target_loss(target, logP_leaf, y).sum(), leaf)
            gate = -g.gather(-1, y.unsqueeze(-1)).squeeze(-1) / (1.0 - p).clamp_min(1e-12)
        if weights is not None:
            gate = gate * weights
        stats = {"p": p, "gate": gate, "entropy": row_entropy(z, lse)}
        if terms is not None and terms.focus is not None:
            stats["focus"] = terms.focus.detach().float()
    return stats


def target_loss(target: CrossEntropyTargets, logP: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token loss ``[n]`` of a distribution objective's :class:`~deft.objectives.CrossEntropyTargets`
    from a differentiable ``log P [n, V]``, by its definition::

        L = label * (-log p) + Σ_k w_k * (-Σ_v Q_k,v log P_v) + uniform * (-mean_v log P_v) + const

    with ``Q_k,v log P_v = 0`` where ``Q_k,v = 0`` (masked vocabulary entries).
    """
    n = logP.shape[0]
    logp = logP.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    loss = field_rows(target.label, n, logP) * -logp + field_rows(target.const, n, logP)
    if not is_zero(target.uniform):
        loss = loss + field_rows(target.uniform, n, logP) * -logP.mean(-1)
    for weight, logQ in target.dists:
        loss = loss + field_rows(weight, n, logP) * -masked_row_dot(logQ.detach().exp(), logP)
    return loss
