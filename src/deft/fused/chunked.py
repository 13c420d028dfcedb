"""The fused chunked loss: hidden ``[N, H]`` x LM head ``[V, H]`` -> any objective.

The ``[N, V]`` logits are never held: rows are processed ``chunk_size`` at a time, each chunk's
logits ``z = h W^T (+ b)`` live only while their gradient ``g = dL/dz`` is formed and pushed
through the two products ``dh = g W`` and ``dW += g^T h``.

* Gate objectives (``g = s (P - δ_y)``, paper Eq. 6) use the analytic gradient: the gate
  ``s = -dL/dlogp`` comes from differentiating the declared ``[n]`` loss vector, and ``g`` is
  written in place over the chunk's logits.
* ``"autograd"`` objectives (any other loss of ``log P``) are differentiated by autograd, one
  row sub-block at a time.
* Distribution objectives declare their loss as cross-entropies to detached targets
  (:class:`~deft.objectives.Target`), so their gradient ``c P - Q`` is closed form too; it is
  formed one row sub-block of the chunk at a time, so the reference / teacher
  distributions stay a fraction of one logits chunk.

For ``reduction="sum"``/``"mean"`` gradients are computed during the forward pass (three matrix
products per chunk, the floor) and scaled in backward. For ``reduction="none"`` the forward pass
only computes losses and backward recomputes the chunks with the per-token upstream gradient.
Loss-token counts are exposed so callers can normalise over a whole optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..objectives import Dists, Objective, Tokens
from ..objectives.base import entropy_of, row_dot
from .common import (
    check_aligned, check_labels, check_needs, gate_terms_with_gate, is_zero, masked_row_dot, reduce,
    resolve_objective, scatter_back, target_rows,
)

__all__ = ["fused_token_loss", "auto_chunk_size", "sub_block_rows"]

_MIN_CHUNK, _MAX_CHUNK = 16, 8192


def auto_chunk_size(num_tokens: int, hidden_size: int, vocab_size: int) -> int:
    """Rows per chunk: one fp32 logits chunk ``[c, V]`` of about half the LM head's fp32 size,
    bounded to 32-512 MiB, so the chunk never dominates the gradient buffers while the
    products stay large enough to run at matrix-multiply speed. Every objective kind uses it:
    distribution objectives keep their extra ``[rows, V]`` tensors small with row sub-blocks
    (:func:`sub_block_rows`), not with a smaller chunk."""
    head_bytes = vocab_size * hidden_size * 4
    budget = min(max(head_bytes // 2, 32 << 20), 512 << 20)
    rows = budget // (vocab_size * 4)
    rows = max(_MIN_CHUNK, min(_MAX_CHUNK, rows - rows % 16 if rows >= 32 else rows))
    return int(max(1, min(rows, max(num_tokens, 1))))


def sub_block_rows(chunk_rows: int) -> int:
    """Rows per sub-block of a distribution objective's chunk: 1/16 of the chunk (at least 16
    rows). A sub-block forms up to about four ``[rows, V]`` tensors (the reference or
    teacher logits and log-distribution, a target ``Q_k`` and its entropy terms), so a
    sixteenth keeps them at about a quarter of one logits chunk, while the chunk's three
    products stay full-sized."""
    return int(max(1, min(chunk_rows, max(16, chunk_rows // 16))))


@dataclass
class _Plan:
    """Everything the chunk loop needs besides the differentiable tensors."""

    objective: Objective
    labels: torch.Tensor  # [M] long, loss tokens only
    chunk_size: int
    reduction: str
    old_logprobs: Optional[torch.Tensor] = None  # [M]
    token_weights: Optional[torch.Tensor] = None  # [M] fp32
    batch_mean_p: Optional[torch.Tensor] = None
    want_stats: bool = False
    grad_enabled: bool = True
    stats: dict = field(default_factory=dict)


def _logits(h: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], out: Optional[torch.Tensor] = None):
    """fp32 logits ``h @ w.T (+ b)`` ``[n, V]``, written into ``out`` when given."""
    if out is not None and h.dtype == torch.float32 and w.dtype == torch.float32:
        z = torch.mm(h, w.T, out=out)
    elif out is not None:
        z = out.copy_(h @ w.T)
    else:
        z = (h @ w.T).float()
    if b is not None:
        z += b.float()
    return z


def _softmax_and_lse_into(z: torch.Tensor, out: torch.Tensor):
    """``P = softmax(z)`` written into ``out`` ``[n, V]`` and ``lse`` ``[n]`` from it:
    ``lse = max - log P[argmax]`` is exact, and ``P[argmax] >= 1/V`` never underflows."""
    top, argmax = z.max(dim=-1)
    probs = _softmax_into(z, out)
    return probs, top - probs.gather(-1, argmax.unsqueeze(-1)).squeeze(-1).log()


def _log_softmax_into(t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Row ``log_softmax`` of logits ``t`` ``[n, V]`` written into ``out`` (not aliasing ``t``):
    no ``[n, V]`` allocation."""
    _, lse = _softmax_and_lse_into(t, out)
    return torch.sub(t, lse.unsqueeze(-1), out=out)


def _aux_rows(aux_entry, s: int, e: int) -> torch.Tensor:
    """Rows ``s:e`` (loss tokens) of a reference / teacher hidden state ``[N, H']``: picked per
    chunk, so the frozen model's hidden states are never copied whole."""
    hidden, _, index = aux_entry
    if index is None:
        return hidden[s:e]
    if isinstance(index, tuple):  # a non-contiguous [..., H'] tensor, indexed by its leading dims
        return hidden[tuple(i[s:e] for i in index)]
    return hidden.index_select(0, index[s:e])


def _softmax_into(z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Row softmax of ``z`` written into ``out``: one row-local kernel, no new allocation."""
    try:
        return torch.ops.aten._softmax.out(z, -1, False, out=out)
    except (RuntimeError, AttributeError):  # pragma: no cover - backends without the out= kernel
        return out.copy_(torch.softmax(z, dim=-1))


def _gate_chunk(plan: _Plan, z, y, s, e, scale, want_grad, want_stats, buf):
    """Gate objective on one chunk: ``g = coef (P - δ_y)`` written into ``buf`` ``[n, V]``."""
    weights = None if plan.token_weights is None else plan.token_weights[s:e]
    probs, lse = _softmax_and_lse_into(z, buf)
    logp = z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
    old = None if plan.old_logprobs is None else plan.old_logprobs[s:e]
    tokens = Tokens(logp, z, lse, probs=probs, old_logprobs=old, batch_mean_p=plan.batch_mean_p)
    terms, gate = gate_terms_with_gate(plan.objective, tokens)
    loss = terms.loss.detach()
    if weights is not None:
        loss, gate = loss * weights, gate * weights
    stats = {}
    if want_stats:
        stats = {"p": logp.exp(), "gate": gate, "entropy": tokens.entropy}
        if terms.focus is not None:
            stats["focus"] = terms.focus.detach().float()
    if not want_grad:
        return loss, None, stats
    coef = gate if scale is None else gate * scale
    grad = probs.mul_(coef.unsqueeze(-1))
    grad.scatter_add_(-1, y.unsqueeze(-1), -coef.unsqueeze(-1))
    return loss, grad, stats


def _distribution_chunk(plan: _Plan, z, y, s, e, aux, scale, want_grad, want_stats, buf, loss_out, work):
    """Distribution (or ``"autograd"``) objective on one chunk, one row sub-block at a time
    (:func:`sub_block_rows`), so the reference / teacher distributions and the targets ``Q_k``
    stay a fraction of one logits chunk. Per-token losses go into ``loss_out`` ``[n]`` and
    the gradient ``[n, V]`` into ``buf``.

    The first reference / teacher model's logits are formed for the whole chunk in ``buf``
    (one full-sized product: a product per small sub-block would re-read its LM head each
    time); each sub-block reads its rows before overwriting them with its gradient."""
    staged = next((key for key in ("ref", "teacher") if aux.get(key)), None)
    if staged is not None:
        _logits(_aux_rows(aux[staged], s, e), aux[staged][1], None, out=buf)
    parts = {}
    step = sub_block_rows(e - s)
    for a in range(0, e - s, step):
        b = min(a + step, e - s)
        sub_scale = None if scale is None else scale[a:b]
        rows = _autograd_rows if plan.objective.kind == "autograd" else _target_rows
        stats = rows(plan, z[a:b], y[a:b], s + a, s + b, aux, sub_scale, want_grad, want_stats,
                     buf[a:b], loss_out[a:b], {key: t[: b - a] for key, t in work.items()}, staged)
        for key, value in stats.items():
            parts.setdefault(key, []).append(value)
    stats = {key: torch.cat(values) for key, values in parts.items()}
    return (buf if want_grad else None), stats


def _aux_log_probs(aux, s, e, out, work, staged) -> dict:
    """Log-probabilities ``[n, V]`` of rows ``s:e`` under the reference / teacher models, in
    their workspaces; the ``staged`` one's logits are read from ``out``."""
    aux_logP = {}
    for key in ("ref", "teacher"):
        if aux.get(key):
            t = out if key == staged else _logits(_aux_rows(aux[key], s, e), aux[key][1], None, out=work["scratch"])
            aux_logP[key] = _log_softmax_into(t, work[key])
    return aux_logP


def _autograd_rows(plan: _Plan, z, y, s, e, aux, scale, want_grad, want_stats, out, loss_out, work, staged):
    """Rows ``s:e`` of an ``"autograd"`` objective: its :class:`~deft.objectives.Terms` from a
    differentiable ``log P``, differentiated by autograd; arguments as :func:`_target_rows`."""
    aux_logP = _aux_log_probs(aux, s, e, out, work, staged)
    token_w = None if plan.token_weights is None else plan.token_weights[s:e]
    need_grad = want_grad or want_stats
    leaf = z.detach().requires_grad_(need_grad)
    with torch.enable_grad():
        logP = torch.log_softmax(leaf, dim=-1)
        lse = torch.logsumexp(z, dim=-1)
        dists = Dists(z, lse, y, logP=logP, ref_logP=aux_logP.get("ref"), teacher_logP=aux_logP.get("teacher"))
        terms = plan.objective.autograd_terms(dists)
        loss = terms.loss if token_w is None else terms.loss * token_w
        grad = torch.autograd.grad(loss.sum(), leaf)[0] if need_grad else None
    loss_out.copy_(loss.detach())
    stats = {}
    if want_stats:
        p = dists.logp.detach().exp()
        gate = -grad.gather(-1, y.unsqueeze(-1)).squeeze(-1) / (1.0 - p).clamp_min(1e-12)
        stats = {"p": p, "gate": gate, "entropy": entropy_of(logP.detach())}
        if terms.focus is not None:
            stats["focus"] = terms.focus.detach().float()
    if want_grad:
        torch.mul(grad, 1.0 if scale is None else scale.unsqueeze(-1), out=out)
    return stats


def _target_rows(plan: _Plan, z, y, s, e, aux, scale, want_grad, want_stats, out, loss_out, work, staged):
    """Rows ``s:e`` of a distribution objective with its closed-form gradient.

    The objective's :class:`~deft.objectives.Target` gives ``L = label (-log p) + Σ_k w_k
    CE(Q_k ‖ P) + uniform CE(U ‖ P) + const``; with ``CE(Q ‖ P) = lse - Σ_v Q_v z_v`` the loss
    needs only row dot products, and ``g = coef [(label + Σ_k w_k + uniform) P - label δ_y -
    Σ_k w_k Q_k - uniform / V]`` (``coef`` = token weight x upstream scale) is written over
    ``P`` in ``out``, one ``Q_k`` alive at a time. ``work`` holds reusable ``[rows, V]``
    buffers, one per reference / teacher distribution (and ``"scratch"`` for the logits of a
    second one); the ``staged`` one's logits are already in ``out``. A ``Q_k`` whose ``log Q``
    is such a buffer is exponentiated in place (the objective is done with it once it has
    returned its target).
    """
    n, vocab = z.shape
    aux_logP = _aux_log_probs(aux, s, e, out, work, staged)
    probs, lse = _softmax_and_lse_into(z, out)
    dists = Dists(z, lse, y, ref_logP=aux_logP.get("ref"), teacher_logP=aux_logP.get("teacher"))
    target = plan.objective.dist_target(dists)
    label = target_rows(target.label, n, z)
    uniform = target_rows(target.uniform, n, z)
    weights = [target_rows(w, n, z) for w, _ in target.dists]
    mass = label + uniform + sum(weights, torch.zeros_like(label))
    loss = label * -dists.logp + target_rows(target.const, n, z)
    if not is_zero(target.uniform):
        loss = loss + uniform * (lse - z.mean(-1))
    token_w = None if plan.token_weights is None else plan.token_weights[s:e]
    coef = torch.ones_like(label) if token_w is None else token_w.clone()
    if scale is not None:
        coef = coef * scale
    stats = {}
    if want_stats:
        p = dists.logp.exp()
        stats = {"p": p, "entropy": Tokens(dists.logp, z, lse, probs=probs).entropy}
        grad_y = mass * p - label - uniform / vocab  # dL/dz_y, completed with the Q_k below
    if want_grad:
        probs.mul_((mass * coef).unsqueeze(-1))
    # a log Q that is exactly a workspace (and used once) is exponentiated in place
    owned = {t.data_ptr(): t.shape for t in aux_logP.values()}
    storages = [logQ.untyped_storage().data_ptr() for _, logQ in target.dists]
    unnormalised = torch.zeros_like(label)  # Σ_k w_k (Σ_v Q_k,v - 1): 0 for distributions
    for w, (_, logQ) in zip(weights, target.dists):
        in_place = (owned.get(logQ.data_ptr()) == logQ.shape and logQ.is_contiguous()
                    and storages.count(logQ.untyped_storage().data_ptr()) == 1)
        q = logQ.exp_() if in_place else logQ.float().exp()
        q_mass = q.sum(-1)
        dot = row_dot(q, z)
        bad = ~torch.isfinite(dot)  # -inf logits where q is 0: 0 * -inf counts as 0
        if bad.any():
            dot[bad] = masked_row_dot(q[bad], z[bad])
        loss = loss + w * (lse * q_mass - dot)
        unnormalised += w * (q_mass - 1.0)
        if want_stats:
            grad_y = grad_y - w * q.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        if want_grad:
            probs.addcmul_(q, (-w * coef).unsqueeze(-1))
        del q
    if want_stats:
        grad_y = grad_y + unnormalised * p
    if want_grad:
        if not is_zero(target.uniform):
            probs.sub_((uniform * coef / vocab).unsqueeze(-1))
        probs.scatter_add_(-1, y.unsqueeze(-1), (-label * coef).unsqueeze(-1))
        # targets that are not distributions (c = Σ_k w_k Σ_v Q_k,v); fp32 sums of a normalised
        # Q over a large vocabulary are 1 only to ~1e-5, which this pass need not correct
        if unnormalised.abs().max() > 1e-3:
            probs.add_(torch.exp(z - lse.unsqueeze(-1)) * (unnormalised * coef).unsqueeze(-1))
    if token_w is not None:
        loss = loss * token_w
    loss_out.copy_(loss)
    if want_stats:
        gate = -grad_y / (1.0 - stats["p"]).clamp_min(1e-12)
        stats["gate"] = gate if token_w is None else gate * token_w
    return stats


def _run(plan: _Plan, h, w, b, aux, *, scale=None, want=(False, False, False), want_stats=False):
    """Run every chunk; return per-token losses ``[M]`` and the gradients asked for in
    ``want = (hidden, weight, bias)`` of ``Σ_i scale_i L_i``."""
    want_h, want_w, want_b = want
    want_grad = any(want)
    m, vocab = h.shape[0], w.shape[0]
    losses = torch.empty(m, dtype=torch.float32, device=h.device)
    dh = torch.empty_like(h) if want_h else None
    dw = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if want_w else None
    db = torch.zeros(vocab, dtype=torch.float32, device=w.device) if want_b else None
    parts: dict[str, list] = {}
    gate_kind = plan.objective.kind == "gate"
    rows = min(plan.chunk_size, m)
    # reusable [chunk, V] fp32 buffers for the logits and the gradient: no allocation per chunk
    zbuf = torch.empty(rows, vocab, dtype=torch.float32, device=h.device)
    gbuf = torch.empty_like(zbuf)
    work = {}
    if not gate_kind:  # per-sub-block workspaces of distribution objectives
        sub = sub_block_rows(rows)
        kinds = [key for key in ("ref", "teacher") if aux.get(key)]
        work = {key: torch.empty(sub, vocab, dtype=torch.float32, device=h.device)
                for key in kinds + (["scratch"] if len(kinds) > 1 else [])}
    for s in range(0, m, plan.chunk_size):
        e = min(s + plan.chunk_size, m)
        hc = h[s:e]
        z = _logits(hc, w, b, out=zbuf[: e - s])
        sc = None if scale is None else scale[s:e]
        y = plan.labels[s:e]
        if gate_kind:
            loss, grad, stats = _gate_chunk(plan, z, y, s, e, sc, want_grad, want_stats, gbuf[: e - s])
            losses[s:e] = loss
        else:
            grad, stats = _distribution_chunk(plan, z, y, s, e, aux, sc, want_grad, want_stats, gbuf[: e - s],
                                              losses[s:e], work)
        for key, value in stats.items():
            parts.setdefault(key, []).append(value)
        if not want_grad:
            continue
        g = grad.to(h.dtype)
        if want_h:
            torch.mm(g, w, out=dh[s:e])
        if want_w:
            if g.dtype == torch.float32:
                dw.addmm_(g.T, hc)
            else:
                dw += (g.T @ hc).float()
        if want_b:
            db += grad.sum(0)
        del z, grad, g
    stats = {key: torch.cat(values) for key, values in parts.items()}
    return losses, (dh, dw, db), stats


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, w, b, plan: _Plan, aux):
        want = tuple(bool(n and plan.grad_enabled) for n in ctx.needs_input_grad[:3])
        ctx.plan, ctx.aux = plan, aux
        if plan.reduction == "none":
            losses, _, stats = _run(plan, h, w, b, aux, want_stats=plan.want_stats)
            ctx.save_for_backward(h, w, b)
            plan.stats = stats
            return losses
        losses, grads, stats = _run(plan, h, w, b, aux, want=want, want_stats=plan.want_stats)
        plan.stats = stats
        count = losses.numel()
        if plan.reduction == "mean" and count:
            grads = tuple(None if g is None else g.div_(count) for g in grads)
        ctx.grads = grads
        return reduce(losses, count, plan.reduction)

    @staticmethod
    def backward(ctx, grad_out):
        plan = ctx.plan
        if plan.reduction == "none":
            h, w, b = ctx.saved_tensors
            want = tuple(ctx.needs_input_grad[:3])
            _, grads, _ = _run(plan, h, w, b, ctx.aux, scale=grad_out.float(), want=want)
        else:
            grads = ctx.grads
            ctx.grads = None
            if not (grad_out.numel() == 1 and float(grad_out) == 1.0):
                grads = tuple(None if g is None else g.mul_(grad_out.to(g.dtype)) for g in grads)
        dh, dw, db = grads
        dw = None if dw is None else dw.to(ctx.aux["weight_dtype"])
        db = None if db is None else db.to(ctx.aux["bias_dtype"])
        return dh, dw, db, None, None


def _batch_mean_p(plan: _Plan, h, w, b) -> torch.Tensor:
    """Mean ``sg(p)`` over all loss tokens (the batch floor of ``cayley_floor``): one extra
    logits pass that keeps only ``[chunk]`` vectors."""
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    with torch.no_grad():
        for s in range(0, h.shape[0], plan.chunk_size):
            e = min(s + plan.chunk_size, h.shape[0])
            z = _logits(h[s:e], w, b)
            y = plan.labels[s:e]
            total += (z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, -1)).exp().sum()
    return total / max(h.shape[0], 1)


def fused_token_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    objective="deft",
    *,
    bias: Optional[torch.Tensor] = None,
    ignore_index: int = -100,
    reduction: str = "sum",
    chunk_size: Optional[int] = None,
    ref_hidden: Optional[torch.Tensor] = None,
    ref_weight: Optional[torch.Tensor] = None,
    teacher_hidden: Optional[torch.Tensor] = None,
    teacher_weight: Optional[torch.Tensor] = None,
    old_logprobs: Optional[torch.Tensor] = None,
    token_weights: Optional[torch.Tensor] = None,
    return_stats: bool = False,
):
    """What :func:`deft.token_loss` returns for ``logits = hidden @ weight.T (+ bias)``,
    computed in chunks without materialising the ``[N, V]`` logits.

    Args:
        hidden: ``[N, H]`` (or ``[..., H]``) final hidden states; gradients flow to it.
        weight: ``[V, H]`` LM-head weight (tied embeddings included); gradients flow to it.
        labels: ``[N]`` (or ``[...]``) aligned with ``hidden``; ``ignore_index`` positions are
            dropped before the projection.
        objective: spec string or :class:`~deft.objectives.Objective`.
        bias: optional ``[V]`` LM-head bias.
        reduction: ``"sum"`` (default, so callers can normalise over a whole optimizer step with
            ``stats["num_tokens"]``), ``"mean"`` or ``"none"`` (per-token, 0 at ignored positions).
        chunk_size: rows per chunk; ``None`` picks one from N, H, V (:func:`auto_chunk_size`).
        ref_hidden, ref_weight: ``[N, H_r]`` and ``[V, H_r]`` of the frozen reference model
            (``sft_kl``, ``asft``); their logits are formed chunk by chunk, never differentiated.
        teacher_hidden, teacher_weight: the same for a teacher (``kd``, ``kd_hybrid``,
            ``target_sft``); the teacher's vocabulary must equal ``V``.
        old_logprobs: ``[N]`` old-policy log-probabilities of the labels (``psft``).
        token_weights: ``[N]`` weights multiplying each token's loss.
        return_stats: also return the per-token statistics dict described in
            :func:`deft.token_loss` (``p``, ``gate``, ``entropy``, ``focus``, ``mask``,
            ``num_tokens``).

    bf16/fp16 inputs are multiplied in their dtype and everything after the product is fp32;
    the weight gradient is accumulated in fp32.
    """
    obj = resolve_objective(objective, reduction)
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden [N, H] and weight [V, H] must share H: got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}")
    if tuple(hidden.shape[:-1]) != tuple(labels.shape):
        raise ValueError(f"hidden [N, H] must align with labels [N]: got {tuple(hidden.shape)} and "
                         f"{tuple(labels.shape)}")
    vocab = weight.shape[0]
    if bias is not None and tuple(bias.shape) != (vocab,):
        raise ValueError(f"bias must have shape ({vocab},), got {tuple(bias.shape)}")
    check_needs(obj, ref=ref_hidden is not None and ref_weight is not None,
                teacher=teacher_hidden is not None and teacher_weight is not None, old=old_logprobs is not None)
    for name, aux_h, aux_w in (("ref", ref_hidden, ref_weight), ("teacher", teacher_hidden, teacher_weight)):
        if aux_h is None:
            continue
        if tuple(aux_h.shape[:-1]) != tuple(labels.shape) or aux_w.dim() != 2 or aux_h.shape[-1] != aux_w.shape[1]:
            raise ValueError(f"{name}_hidden [N, H'] must align with labels and {name}_weight [V, H']: got "
                             f"{tuple(aux_h.shape)} and {tuple(aux_w.shape)}")
        if aux_w.shape[0] != vocab:
            raise ValueError(f"the {name} model's vocabulary ({aux_w.shape[0]}) differs from the model's ({vocab}); "
                             "a reference or teacher must share the tokenizer")
    check_aligned("old_logprobs", old_logprobs, labels.shape)
    check_aligned("token_weights", token_weights, labels.shape)

    shape, size = labels.shape, labels.numel()
    flat_labels = labels.reshape(-1)
    keep = flat_labels != ignore_index
    check_labels(flat_labels, vocab, keep)
    index = keep.nonzero().squeeze(-1)
    all_kept = index.numel() == size

    def pick(t):
        if t is None:
            return None
        t = t.reshape(size, *t.shape[labels.dim():])
        return t if all_kept else t.index_select(0, index)

    def aux_entry(aux_h, aux_w):
        """``(hidden rows, weight, index)`` of a frozen model, never copying its hidden states."""
        aux_h = aux_h.detach()
        try:
            return aux_h.view(size, aux_h.shape[-1]), aux_w.detach(), None if all_kept else index
        except RuntimeError:  # e.g. hidden[:, :-1] of a batch: index the leading dims per chunk
            rows = torch.arange(size, device=index.device) if all_kept else index
            return aux_h, aux_w.detach(), torch.unravel_index(rows, tuple(labels.shape))

    h = pick(hidden)
    m = h.shape[0]
    plan = _Plan(
        objective=obj,
        labels=pick(flat_labels).long(),
        chunk_size=int(chunk_size) if chunk_size else auto_chunk_size(m, weight.shape[1], vocab),
        reduction=reduction,
        old_logprobs=None if old_logprobs is None else pick(old_logprobs).detach().float(),
        token_weights=None if token_weights is None else pick(token_weights).detach().float(),
        want_stats=return_stats,
        grad_enabled=torch.is_grad_enabled(),
    )
    if plan.chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    aux = {
        "ref": None if ref_hidden is None else aux_entry(ref_hidden, ref_weight),
        "teacher": None if teacher_hidden is None else aux_entry(teacher_hidden, teacher_weight),
        "weight_dtype": weight.dtype,
        "bias_dtype": None if bias is None else bias.dtype,
    }
    if "batch" in obj.needs:
        plan.batch_mean_p = _batch_mean_p(plan, h.detach(), weight.detach(), None if bias is None else bias.detach())

    out = _FusedLoss.apply(h, weight, bias, plan, aux)
    loss = scatter_back(out, index, size, shape) if reduction == "none" else out
    if not return_stats:
        return loss
    for key in ("p", "gate", "entropy") + (("focus",) if obj.definition.has_focus else ()):
        plan.stats.setdefault(key, h.new_zeros(0, dtype=torch.float32))  # no loss token at all
    stats = {key: scatter_back(value.float(), index, size, shape) for key, value in plan.stats.items()}
    stats["mask"] = keep.reshape(shape)
    stats["num_tokens"] = int(m)
    return loss, stats
