"""Distribution objectives on one row sub-block, with their closed-form gradient.

The objective's :class:`~deft.objectives.CrossEntropyTargets` gives (paper, Appendix B form
``g = c P - Q``)::

    L = label (-log p) + Σ_k w_k CE(Q_k ‖ P) + uniform CE(U ‖ P) + const,   U = 1/V
    CE(Q ‖ P) = lse · Σ_v Q_v - Σ_v Q_v z_v
    g = coef [(label + Σ_k w_k Σ_v Q_k,v + uniform) P - label δ_y - Σ_k w_k Q_k - uniform / V]

so the loss needs only row dot products, and ``g`` (``coef`` = token weight x upstream scale)
is written over ``P`` in the gradient buffer, one ``Q_k`` alive at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..objectives import Dists
from .common import field_rows, is_zero, masked_row_dot
from .context import ChunkContext, probs_entropy, row_dot, softmax_and_lse_into
from .frozen import frozen_log_probs

__all__ = ["target_rows"]


@dataclass
class _Rows:
    """The sub-block's state while its targets are accumulated (all ``[n]`` unless noted)."""

    z: torch.Tensor  # [n, V] logits
    y: torch.Tensor
    probs: torch.Tensor  # [n, V]: P, then overwritten by the gradient
    lse: torch.Tensor
    coef: torch.Tensor  # token weight x upstream scale
    loss: torch.Tensor
    grad_y: Optional[torch.Tensor]  # dL/dz_y (statistics only)
    unnormalised: torch.Tensor  # Σ_k w_k (Σ_v Q_k,v - 1): 0 for distributions


def _in_place_ok(logQ: torch.Tensor, owned: dict, storages: list) -> bool:
    """A ``log Q`` that is exactly a workspace, used once, may be exponentiated in place (the
    objective is done with it once it has returned its targets)."""
    return (owned.get(logQ.data_ptr()) == logQ.shape and logQ.is_contiguous()
            and storages.count(logQ.untyped_storage().data_ptr()) == 1)


def _add_distribution(rows: _Rows, w: torch.Tensor, q: torch.Tensor, want_grad: bool) -> None:
    """One ``w_k CE(Q_k ‖ P)`` term: its loss, its ``-w_k Q_k`` gradient part and mass."""
    q_mass = q.sum(-1)
    dot = row_dot(q, rows.z)
    bad = ~torch.isfinite(dot)  # -inf logits where q is 0: 0 * -inf counts as 0
    if bad.any():
        dot[bad] = masked_row_dot(q[bad], rows.z[bad])
    rows.loss = rows.loss + w * (rows.lse * q_mass - dot)
    rows.unnormalised += w * (q_mass - 1.0)
    if rows.grad_y is not None:
        rows.grad_y = rows.grad_y - w * q.gather(-1, rows.y.unsqueeze(-1)).squeeze(-1)
    if want_grad:
        rows.probs.addcmul_(q, (-w * rows.coef).unsqueeze(-1))


def target_rows(ctx: ChunkContext) -> dict:
    """Losses into ``ctx.losses`` and ``g`` into ``ctx.grad_out`` for a distribution objective;
    returns the rows' statistics (``gate = -g_y / (1 - p)``)."""
    z, y = ctx.logits, ctx.labels
    n, vocab = z.shape
    frozen = frozen_log_probs(ctx)  # before P overwrites the staged logits in grad_out
    probs, lse = softmax_and_lse_into(z, ctx.grad_out)
    dists = Dists(z, lse, y, inputs={**ctx.inputs(), **frozen})
    target = ctx.objective.dist_target(dists)
    label, uniform = field_rows(target.label, n, z), field_rows(target.uniform, n, z)
    weights = [field_rows(w, n, z) for w, _ in target.dists]
    mass = label + uniform + sum(weights, torch.zeros_like(label))
    token_w = ctx.token_weights()
    coef = torch.ones_like(label) if token_w is None else token_w.clone()
    if ctx.scale is not None:
        coef = coef * ctx.scale
    rows = _Rows(z, y, probs, lse, coef, loss=label * -dists.logp + field_rows(target.const, n, z), grad_y=None,
                 unnormalised=torch.zeros_like(label))
    if not is_zero(target.uniform):
        rows.loss = rows.loss + uniform * (lse - z.mean(-1))
    stats = {}
    if ctx.want_stats:
        p = dists.logp.exp()
        stats = {"p": p, "entropy": probs_entropy(probs)}
        rows.grad_y = mass * p - label - uniform / vocab  # completed with the Q_k below
    if ctx.want_grad:
        probs.mul_((mass * coef).unsqueeze(-1))
    owned = {t.data_ptr(): t.shape for t in frozen.values()}
    storages = [logQ.untyped_storage().data_ptr() for _, logQ in target.dists]
    for w, (_, logQ) in zip(weights, target.dists):
        q = logQ.exp_() if _in_place_ok(logQ, owned, storages) else logQ.float().exp()
        _add_distribution(rows, w, q, ctx.want_grad)
        del q
    if ctx.want_grad:
        if not is_zero(target.uniform):
            probs.sub_((uniform * coef / vocab).unsqueeze(-1))
        probs.scatter_add_(-1, y.unsqueeze(-1), (-label * coef).unsqueeze(-1))
        # targets that are not distributions (c = Σ_k w_k Σ_v Q_k,v): P (c - Σ_k w_k) more. fp32 sums
        # of a normalised Q over a large vocabulary are 1 only to ~1e-5, which this pass need not
        # correct; the test is relative to the weights, so a small-weight term's excess is corrected
        if (rows.unnormalised.abs() > 1e-3 * sum((w.abs() for w in weights), torch.zeros_like(label))).any():
            probs.add_(torch.exp(z - lse.unsqueeze(-1)) * (rows.unnormalised * coef).unsqueeze(-1))
    ctx.losses.copy_(rows.loss if token_w is None else rows.loss * token_w)
    if ctx.want_stats:
        gate = -(rows.grad_y + rows.unnormalised * stats["p"]) / (1.0 - stats["p"]).clamp_min(1e-12)
        stats["gate"] = gate if token_w is None else gate * token_w
    return stats
