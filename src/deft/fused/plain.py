"""The plain full-logits loss: every objective from materialised logits, by autograd.

This is the oracle the fused engine is tested against and the fallback for callers that
already hold logits.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..objectives import Dists, Target, Tokens
from ..objectives.base import row_entropy
from .common import (
    check_aligned, check_labels, check_needs, gate_terms_with_gate, is_zero, masked_row_dot, reduce,
    resolve_objective, scatter_back, target_rows,
)

__all__ = ["token_loss"]


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
    return_stats: bool = False,
):
    """Token-level SFT loss of ``objective`` from logits.

    Args:
        logits: ``[..., V]`` (fp32, bf16 or fp16; computed in fp32).
        labels: ``[...]`` aligned with ``logits`` (no shift inside, like ``F.cross_entropy``);
            positions equal to ``ignore_index`` contribute nothing.
        objective: a spec string such as ``"deft"`` or ``"power:alpha=0.5"``, or an
            :class:`~deft.objectives.Objective`; see :func:`deft.list_objectives`.
        reduction: ``"none"`` (per-token ``[...]``, 0 at ignored positions), ``"sum"``, or
            ``"mean"`` (sum over loss tokens divided by their count; 0 when there are none).
        ref_logits, teacher_logits: ``[..., V]`` logits of a frozen reference model / teacher
            (``sft_kl``, ``asft`` / ``kd``, ``kd_hybrid``, ``target_sft``); never differentiated.
        old_logprobs: ``[...]`` old-policy log-probabilities of the labels (``psft``).
        token_weights: ``[...]`` weights multiplying each token's loss (per-example weights
            broadcast over the example's tokens).
        return_stats: also return a dict of per-token ``[...]`` tensors ``p``, ``gate`` (``s`` in
            ``dL/dz_y = -s (1 - p)``; for distribution objectives the effective value
            ``-g_y / (1 - p)``), ``entropy``, ``focus`` (objectives with a focus index only),
            ``mask`` (loss positions) and the integer ``num_tokens``.

    Returns:
        The loss, or ``(loss, stats)`` with ``return_stats=True``.
    """
    obj = resolve_objective(objective, reduction)
    if logits.dim() < 1 or tuple(logits.shape[:-1]) != tuple(labels.shape):
        raise ValueError(f"logits [..., V] must align with labels [...]: got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    check_needs(obj, ref=ref_logits is not None, teacher=teacher_logits is not None, old=old_logprobs is not None)
    for name, aux in (("ref_logits", ref_logits), ("teacher_logits", teacher_logits)):
        if aux is not None and tuple(aux.shape) != tuple(logits.shape):
            raise ValueError(f"{name} must have the logits' shape {tuple(logits.shape)} (same vocabulary), "
                             f"got {tuple(aux.shape)}")
    check_aligned("old_logprobs", old_logprobs, labels.shape)
    check_aligned("token_weights", token_weights, labels.shape)

    vocab = logits.shape[-1]
    shape, size = labels.shape, labels.numel()
    flat_labels = labels.reshape(-1)
    keep = flat_labels != ignore_index
    check_labels(flat_labels, vocab, keep)
    index = keep.nonzero().squeeze(-1)
    y = flat_labels.index_select(0, index).long()
    z = logits.reshape(-1, vocab).index_select(0, index).float()

    def pick(aux):
        return None if aux is None else aux.reshape(-1, *aux.shape[labels.dim():]).index_select(0, index)

    old = pick(old_logprobs)
    lse = torch.logsumexp(z, dim=-1)
    if obj.kind == "gate":
        logp = z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
        tokens = Tokens(logp, z, lse, old_logprobs=None if old is None else old.float())
        terms = obj.gate_terms(tokens)
        per_token = terms.loss
    else:
        aux_logP = dict(
            ref_logP=None if ref_logits is None else torch.log_softmax(pick(ref_logits).detach().float(), -1),
            teacher_logP=None if teacher_logits is None else torch.log_softmax(pick(teacher_logits).detach().float(), -1),
        )
        if obj.kind == "autograd":
            terms = obj.autograd_terms(Dists(z.detach(), lse.detach(), y, logP=z - lse.unsqueeze(-1), **aux_logP))
            per_token = terms.loss
        else:
            target = obj.dist_target(Dists(z.detach(), lse.detach(), y, **aux_logP))
            per_token = target_loss(target, z - lse.unsqueeze(-1), y)
            terms = None
    weights = pick(token_weights)
    if weights is not None:
        per_token = per_token * weights.float()

    if reduction == "none":
        loss = scatter_back(per_token, index, size, shape)
    else:
        loss = reduce(per_token, index.numel(), reduction)
    if not return_stats:
        return loss

    with torch.no_grad():
        zd, lsed = z.detach(), lse.detach()
        p = (zd.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lsed).exp()
        if obj.kind == "gate":
            _, gate = gate_terms_with_gate(obj, tokens)
        else:
            with torch.enable_grad():
                leaf = zd.clone().requires_grad_(True)
                logP_leaf = leaf - torch.logsumexp(leaf, -1, keepdim=True)
                if obj.kind == "autograd":
                    leaf_terms = obj.autograd_terms(Dists(zd, lsed, y, logP=logP_leaf, **aux_logP))
                    (g,) = torch.autograd.grad(leaf_terms.loss.sum(), leaf)
                else:
                    (g,) = torch.autograd.grad(target_loss(target, logP_leaf, y).sum(), leaf)
            gate = -g.gather(-1, y.unsqueeze(-1)).squeeze(-1) / (1.0 - p).clamp_min(1e-12)
        if weights is not None:
            gate = gate * weights.float()
        stats = {
            "p": scatter_back(p, index, size, shape),
            "gate": scatter_back(gate, index, size, shape),
            "entropy": scatter_back(row_entropy(zd, lsed), index, size, shape),
            "mask": keep.reshape(shape),
            "num_tokens": int(index.numel()),
        }
        if terms is not None and terms.focus is not None:
            stats["focus"] = scatter_back(terms.focus.detach().float(), index, size, shape)
    return loss, stats


def target_loss(target: Target, logP: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token loss ``[n]`` of a distribution objective's :class:`~deft.objectives.Target`
    from a differentiable ``log P [n, V]``, by its definition::

        L = label * (-log p) + Σ_k w_k * (-Σ_v Q_k,v log P_v) + uniform * (-mean_v log P_v) + const

    with ``Q_k,v log P_v = 0`` where ``Q_k,v = 0`` (masked vocabulary entries).
    """
    n = logP.shape[0]
    logp = logP.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    loss = target_rows(target.label, n, logP) * -logp + target_rows(target.const, n, logP)
    if not is_zero(target.uniform):
        loss = loss + target_rows(target.uniform, n, logP) * -logP.mean(-1)
    for weight, logQ in target.dists:
        loss = loss + target_rows(weight, n, logP) * -masked_row_dot(logQ.detach().exp(), logP)
    return loss
