"""Distribution and autograd objectives on one chunk: row sub-blocks and the frozen models'
log-probabilities.

A chunk is processed one row sub-block at a time (:func:`sub_block_rows` rows), so the frozen
models' distributions and the targets ``Q_k`` stay a fraction of one logits chunk. The first
frozen model's logits are formed for the whole chunk in the gradient buffer (one full-sized
product: a product per small sub-block would re-read its LM head each time); each sub-block
reads its rows before overwriting them with its gradient.
"""

from __future__ import annotations

import torch

from ..objectives import NEEDS
from .context import ChunkContext, ChunkResult, log_softmax_into, logits_into

__all__ = ["sub_block_rows", "distribution_chunk", "frozen_log_probs", "workspaces"]


def sub_block_rows(chunk_rows: int) -> int:
    """Rows per sub-block of a distribution objective's chunk: 1/16 of the chunk (at least 16
    rows). A sub-block forms up to about four ``[rows, V]`` tensors (the reference or
    teacher logits and log-distribution, a target ``Q_k`` and its entropy terms), so a
    sixteenth keeps them at about a quarter of one logits chunk, while the chunk's three
    products stay full-sized."""
    return int(max(1, min(chunk_rows, max(16, chunk_rows // 16))))


def workspaces(frozen: dict, chunk_rows: int, vocab: int, device) -> dict:
    """Reusable fp32 ``[sub-block rows, V]`` buffers: one per frozen model, plus ``"scratch"``
    for the logits of any model after the first (whose logits are staged in the gradient buffer)."""
    rows = sub_block_rows(chunk_rows)
    names = list(frozen) + (["scratch"] if len(frozen) > 1 else [])
    return {name: torch.empty(rows, vocab, dtype=torch.float32, device=device) for name in names}


def frozen_log_probs(ctx: ChunkContext) -> dict:
    """Need field -> ``log π [n, V]`` of every frozen model on these rows, in their workspaces;
    the staged model's logits are read from ``ctx.grad_out``."""
    out = {}
    for name, frozen in ctx.plan.frozen.items():
        if name == ctx.staged:
            logits = ctx.grad_out
        else:
            logits = logits_into(frozen.rows(ctx.start, ctx.end), frozen.weight, frozen.bias,
                                 out=ctx.workspaces["scratch"])
        out[NEEDS[name].field] = log_softmax_into(logits, ctx.workspaces[name])
    return out


def distribution_chunk(ctx: ChunkContext, rows_step) -> ChunkResult:
    """Run ``rows_step(sub_ctx) -> stats`` (:func:`deft.fused.target.target_rows` or
    :func:`deft.fused.autodiff.autograd_rows`) over the chunk's row sub-blocks; the per-token
    losses and the gradient land in ``ctx.losses`` and ``ctx.grad_out``."""
    staged = next(iter(ctx.plan.frozen), None)
    if staged is not None:
        frozen = ctx.plan.frozen[staged]
        logits_into(frozen.rows(ctx.start, ctx.end), frozen.weight, frozen.bias, out=ctx.grad_out)
    ctx.staged = staged
    parts: dict = {}
    n = ctx.end - ctx.start
    step = sub_block_rows(n)
    for a in range(0, n, step):
        stats = rows_step(ctx.sub_block(a, min(a + step, n)))
        for key, value in stats.items():
            parts.setdefault(key, []).append(value)
    stats = {key: torch.cat(values) for key, values in parts.items()}
    return ChunkResult(ctx.grad_out if ctx.want_grad else None, stats)
