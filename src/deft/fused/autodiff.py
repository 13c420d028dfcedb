"""``"autograd"`` objectives on one row sub-block: any loss of the differentiable ``log P``,
differentiated by autograd (slower than the closed forms of the gate and target paths)."""

from __future__ import annotations

import torch

from ..objectives import Dists
from ..objectives.base import entropy_of
from .context import ChunkContext
from .frozen import frozen_log_probs

__all__ = ["autograd_rows"]


def autograd_rows(ctx: ChunkContext) -> dict:
    """Losses into ``ctx.losses``, ``dL/dz`` (times the upstream scale) into ``ctx.grad_out``;
    returns the rows' statistics, with ``gate = -g_y / (1 - p)``."""
    z, y = ctx.logits, ctx.labels
    inputs = {**ctx.inputs(), **frozen_log_probs(ctx)}
    token_w = ctx.token_weights()
    need_grad = ctx.want_grad or ctx.want_stats
    leaf = z.detach().requires_grad_(need_grad)
    with torch.enable_grad():
        logP = torch.log_softmax(leaf, dim=-1)
        lse = torch.logsumexp(z, dim=-1)
        dists = Dists(z, lse, y, logP=logP, inputs=inputs)
        terms = ctx.objective.autograd_terms(dists)
        loss = terms.loss if token_w is None else terms.loss * token_w
        grad = torch.autograd.grad(loss.sum(), leaf)[0] if need_grad else None
    ctx.losses.copy_(loss.detach())
    stats = {}
    if ctx.want_stats:
        p = dists.logp.detach().exp()
        gate = -grad.gather(-1, y.unsqueeze(-1)).squeeze(-1) / (1.0 - p).clamp_min(1e-12)
        stats = {"p": p, "gate": gate, "entropy": entropy_of(logP.detach())}
        if terms.focus is not None:
            stats["focus"] = terms.focus.detach().float()
    if ctx.want_grad:
        torch.mul(grad, 1.0 if ctx.scale is None else ctx.scale.unsqueeze(-1), out=ctx.grad_out)
    return stats
