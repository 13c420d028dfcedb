"""Gate objectives on one chunk: ``g = s (P - δ_y)`` (paper Eq. 6, Lemma 2).

The gate ``s = -dL/dlog p`` comes from differentiating the objective's ``[n]`` loss vector with
respect to ``log p`` (:func:`~deft.fused.common.gate_terms_with_gate`), on per-row statistics
from one pass over the chunk's logits ``z [n, V]``, done by the plan's implementation
(:mod:`.compiled`):

* ``"eager"``: the softmax is written over ``z`` in its fp32 buffer, so the chunk holds one
  ``[n, V]`` buffer. ``log p = log P_y`` (rows whose ``P_y`` is below the smallest normal fp32
  number take ``log p = z_y - lse`` from their logits, formed again). ``Σ_v P_v²``, the
  entropy ``-Σ_v P_v log P_v`` and the top-k entropy are read from ``P`` when the objective or
  the statistics ask for them. The step returns ``P - δ_y`` (the label's entry lowered by one,
  in place) and ``coef = s * token weight * upstream scale`` ``[n]``, which the chunk loop applies
  to the ``[n, H]`` side of the products: no ``[n, V]`` pass multiplies by the gate.
* ``"compile"``: :func:`~deft.fused.compiled.row_stats` for the statistics, then
  :func:`~deft.fused.compiled.write_grad` writes ``g = coef (P - δ_y)`` in the products' dtype.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch

from ..objectives import Tokens
from .common import gate_terms_with_gate
from .compiled import run_compiled
from .context import ChunkContext, ChunkResult, probs_entropy, softmax_into

__all__ = ["gate_chunk", "ChunkTokens"]

_TINY = torch.finfo(torch.float32).tiny  # below it P_y is subnormal: log P_y has lost digits


class ChunkTokens(Tokens):
    """:class:`~deft.objectives.Tokens` of one chunk whose statistics come from the gate step's
    row pass, not from the base class's full-logits formulas: ``probs`` ``P [n, V]`` (eager: the
    chunk's buffer, valid until the step lowers the labels' entries) or ``logits`` ``z [n, V]``
    in the products' dtype (compiled), and ``known`` statistics (``sum_p2``, ``entropy``)."""

    def __init__(self, logp, lse, *, probs=None, logits=None, known: Optional[dict] = None, inputs=None):
        super().__init__(logp, logits, lse, probs=probs, inputs=inputs)
        self._cache.update(known or {})

    def with_logp(self, logp):
        other = copy.copy(self)  # shares the cache and the inputs, keeps this class
        other.logp = logp
        return other

    @property
    def vocab_size(self) -> int:
        return (self._probs if self._probs is not None else self._logits).shape[-1]

    @property
    def sum_p2(self) -> torch.Tensor:
        """``Σ_v P_v²`` ``[n]`` (paper Eq. 20): one read of ``P`` (a row norm, no temporary)."""
        if "sum_p2" not in self._cache:
            self._cache["sum_p2"] = torch.linalg.vector_norm(self._probs, dim=-1).square()
        return self._cache["sum_p2"]

    @property
    def entropy(self) -> torch.Tensor:
        if "entropy" not in self._cache:
            self._cache["entropy"] = probs_entropy(self._probs)
        return self._cache["entropy"]

    def topk_entropy(self, k: int) -> torch.Tensor:
        """Entropy of the renormalised top-``k`` probabilities ``[n]`` (EAFT), from the logits
        (compiled) or the probabilities (eager: ``q = P_top / Σ P_top``)."""
        key = ("topk_entropy", k)
        if key not in self._cache:
            k = min(k, self.vocab_size)
            if self._logits is not None:  # [n, k] only: the selection is exact in any dtype
                q = torch.softmax(torch.topk(self._logits, k, dim=-1).values.float(), dim=-1)
            else:
                top = torch.topk(self._probs, k, dim=-1).values
                q = top / top.sum(-1, keepdim=True)
            self._cache[key] = torch.special.entr(q).sum(-1)  # a masked (-inf) entry: 0 log 0 = 0
        return self._cache[key]


def _eager_tokens(ctx: ChunkContext) -> ChunkTokens:
    """Softmax over the chunk's fp32 logits, in place; ``log p`` from ``P_y``."""
    z, y = ctx.logits, ctx.labels
    label_logits = z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    probs = softmax_into(z, z)  # no max pass of its own: log p comes from the label's probability
    p = probs.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    logp = p.log()
    low = p < _TINY
    if low.any():  # rare (p < 1e-38): log p = z_y - lse, these rows' logits formed again
        logp[low] = label_logits[low] - torch.logsumexp(ctx.logits_of(low), dim=-1)
    return ChunkTokens(logp, None, probs=probs, inputs=ctx.inputs())  # the statistics read P: no lse


def _compiled_tokens(ctx: ChunkContext) -> ChunkTokens:
    """The compiled statistics pass over the logits (in the products' dtype)."""
    lse, logp, sum_p2, entropy = run_compiled("row_stats", ctx.logits, ctx.labels)
    return ChunkTokens(logp, lse, logits=ctx.logits, known={"sum_p2": sum_p2, "entropy": entropy},
                       inputs=ctx.inputs())


def _statistics(tokens: ChunkTokens, terms, gate: torch.Tensor) -> dict:
    """``p``, ``gate``, ``entropy`` (and ``focus``) ``[n]`` of the chunk's rows."""
    stats = {"p": tokens.p, "gate": gate, "entropy": tokens.entropy}
    if terms.focus is not None:
        stats["focus"] = terms.focus.detach().float()
    return stats


def _error_in_place(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``P - δ_y``: the labels' entries of ``P`` ``[n, V]`` lowered by one, in place."""
    y = labels.unsqueeze(-1)
    return probs.scatter_add_(-1, y, torch.full(y.shape, -1.0, dtype=probs.dtype, device=probs.device))


def gate_chunk(ctx: ChunkContext) -> ChunkResult:
    """Per-token losses into ``ctx.losses``; the gradient ``coef (P - δ_y)`` with ``coef = s *
    token weight * upstream scale`` ``[n]``: ``P - δ_y`` in the logits' buffer and ``coef`` apart
    (eager), or ``g`` itself in the products' dtype (compiled)."""
    eager = ctx.plan.impl == "eager"
    tokens = _eager_tokens(ctx) if eager else _compiled_tokens(ctx)
    terms, gate = gate_terms_with_gate(ctx.objective, tokens)
    loss = terms.loss.detach()
    weights = ctx.token_weights()
    if weights is not None:
        loss, gate = loss * weights, gate * weights
    ctx.losses.copy_(loss)
    selected = ctx.objective.selected(tokens.p).sum() if ctx.objective.normalizer == "selected" else None
    stats = _statistics(tokens, terms, gate) if ctx.want_stats else {}  # before the gradient: it overwrites P
    if not ctx.want_grad:
        return ChunkResult(None, stats, selected)
    coef = gate if ctx.scale is None else gate * ctx.scale
    if eager:
        return ChunkResult(_error_in_place(tokens._probs, ctx.labels), stats, selected, coef=coef)
    grad = run_compiled("write_grad", ctx.logits, tokens._lse, coef, ctx.labels, ctx.logits.dtype)
    return ChunkResult(grad, stats, selected)
