"""Gate objectives on one chunk: ``g = s (P - δ_y)`` (paper Eq. 6, Lemma 2).

The gate ``s = -dL/dlogp`` comes from differentiating the objective's ``[n]`` loss vector with
respect to ``log p`` (:func:`~deft.fused.common.gate_terms_with_gate`); the ``[n, V]`` gradient
is then written in place over ``P`` in the chunk's gradient buffer. :func:`gate_chunk` is the
single per-chunk step of this path, so an alternative implementation (e.g. a compiled kernel)
can replace it with the same signature.
"""

from __future__ import annotations

from ..objectives import Tokens
from .common import gate_terms_with_gate
from .context import ChunkContext, ChunkResult, softmax_and_lse_into

__all__ = ["gate_chunk"]


def gate_chunk(ctx: ChunkContext) -> ChunkResult:
    """Per-token losses into ``ctx.losses`` and ``g = coef (P - δ_y)`` into ``ctx.grad_out``,
    with ``coef = s * token weight * upstream scale`` ``[n]``."""
    z, y = ctx.logits, ctx.labels
    probs, lse = softmax_and_lse_into(z, ctx.grad_out)
    logp = z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
    tokens = Tokens(logp, z, lse, probs=probs, inputs=ctx.inputs())
    terms, gate = gate_terms_with_gate(ctx.objective, tokens)
    loss = terms.loss.detach()
    weights = ctx.token_weights()
    if weights is not None:
        loss, gate = loss * weights, gate * weights
    ctx.losses.copy_(loss)
    selected = None
    if ctx.objective.normalizer == "selected":
        selected = ctx.objective.selected(logp.exp()).sum()
    stats = {}
    if ctx.want_stats:
        stats = {"p": logp.exp(), "gate": gate, "entropy": tokens.entropy}
        if terms.focus is not None:
            stats["focus"] = terms.focus.detach().float()
    if not ctx.want_grad:
        return ChunkResult(None, stats, selected)
    coef = gate if ctx.scale is None else gate * ctx.scale
    grad = probs.mul_(coef.unsqueeze(-1))
    grad.scatter_add_(-1, y.unsqueeze(-1), -coef.unsqueeze(-1))
    return ChunkResult(grad, stats, selected)
