"""The fused chunked loss: hidden ``[N, H]`` x LM head ``[V, H]`` -> any objective, without the
``[N, V]`` logits.

Rows are processed ``chunk_size`` at a time; each chunk's logits ``z = h W^T (+ b)`` live only
while their gradient ``g = dL/dz`` is formed and pushed through the two products ``dh = g W``
and ``dW += g^T h``. For ``reduction="sum"``/``"mean"`` the gradients are computed during the
forward pass (three matrix products per chunk, the floor) and scaled in backward; for
``reduction="none"`` the forward pass computes losses only and backward recomputes the chunks
with the per-token upstream gradient. Call tree::

    fused_token_loss(hidden, weight, labels, objective, impl=..., ...)
    ├── prepare()                         prepare.py: checks, drop ignored rows, route needs -> Plan
    │   ├── resolve_impl()                the gate step's implementation: eager / compile compiled.py
    │   └── STATISTIC_PROVIDERS[...]      call-wide statistics from loss_token_logp() common.py
    ├── _SumFused / _NoneFused.apply()    autograd Functions (this module)
    │   └── run_chunks(plan, h, w, b)     chunk loop, reusable [chunk, V] buffers (this module)
    │       ├── logits_into()             z = h W^T + b                         context.py
    │       ├── step(ctx) for ctx = ChunkContext(rows, z, labels, buffers, scale)
    │       │   ├── gate_chunk()          gate objectives: g = s (P - δ_y)      gate.py
    │       │   │   └── row_stats(), write_grad()   impl="compile" only         compiled.py
    │       │   └── distribution_chunk()  row sub-blocks + frozen log-probs     frozen.py
    │       │       ├── target_rows()     distribution: g = c P - Q, closed form target.py
    │       │       └── autograd_rows()   any loss of log P, by autograd        autodiff.py
    │       └── add_products()            dh = g W, dW += g^T h, db += Σ g (this module)
    └── statistics scattered back to the labels' shape; num_tokens = the mean's denominator
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .autodiff import autograd_rows
from .common import reduce, resolve_objective, scatter_back
from .compiled import CompileFailed, fall_back
from .context import ChunkContext, ChunkResult, Plan, logits_into
from .frozen import distribution_chunk, sub_block_rows, workspaces
from .gate import gate_chunk
from .prepare import auto_chunk_size, prepare
from .target import target_rows

__all__ = ["fused_token_loss", "auto_chunk_size", "sub_block_rows", "run_chunks", "step_for", "add_products",
           "accumulate_weight_grad"]

_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def step_for(kind: str):
    """The per-chunk step ``ChunkContext -> ChunkResult`` of an objective kind."""
    if kind == "gate":  # eager or compiled, as the plan's impl says
        return gate_chunk
    rows = autograd_rows if kind == "autograd" else target_rows
    return lambda ctx: distribution_chunk(ctx, rows)


@dataclass
class RunResult:
    """Per-token losses ``[M]``, gradients ``(dh, dw, db)`` (None where not asked for),
    statistics (key -> ``[M]``) and the number of selected tokens (``normalizer="selected"``)."""

    losses: torch.Tensor
    grads: tuple
    stats: dict
    selected: Optional[int]


def _fp32_out_gemm(device: torch.device, version: tuple = _TORCH_VERSION) -> bool:
    """Whether ``addmm`` is asked to write a bf16/fp16 product straight into an fp32 ``out=`` on
    ``device``: CUDA from torch ``version`` 2.12 (earlier out_dtype GEMMs lack the out= form; the
    CPU has no such kernel, so it is not asked there)."""
    return device.type == "cuda" and version >= (2, 12)


def _add_low_precision_product(dw: torch.Tensor, g: torch.Tensor, h: torch.Tensor, fp32_out: bool) -> None:
    """``dW += g^T h`` for ``g``, ``h`` in a lower precision than ``dw``: one GEMM with fp32 output
    where ``fp32_out`` (no ``[V, H]`` temporary), else (or if that GEMM fails) through a temporary
    product in ``g``'s dtype."""
    if fp32_out:
        try:
            torch.addmm(dw, g.T, h, out_dtype=dw.dtype, out=dw)
            return
        except (TypeError, RuntimeError):  # a build without the out= form, a backend without the kernel
            pass
    dw += (g.T @ h).float()


def accumulate_weight_grad(dw: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> None:
    """``dW += g^T h`` into the fp32 ``dw`` ``[V, H]``: bf16 operands are multiplied in bf16 with
    fp32 output where the backend offers it (CUDA, torch >= 2.12: no ``[V, H]`` temporary),
    else through a temporary product."""
    if g.dtype == dw.dtype:
        dw.addmm_(g.T, h)
    else:
        _add_low_precision_product(dw, g, h, fp32_out=_fp32_out_gemm(dw.device))


def _operand(result: ChunkResult, dtype: torch.dtype):
    """``(g or P - δ_y in the products' dtype, coef or None)``: a ``coef`` stays apart (applied to
    the ``[n, H]`` side) where no cast is needed, else it is folded into the cast."""
    if result.coef is None:
        return result.grad.to(dtype), None
    if result.grad.dtype == dtype:
        return result.grad, result.coef
    out = torch.empty(result.grad.shape, dtype=dtype, device=result.grad.device)
    return torch.mul(result.grad, result.coef.unsqueeze(-1), out=out), None


def add_products(grads: tuple, result: ChunkResult, hc: torch.Tensor, w: torch.Tensor, rows: slice) -> None:
    """The chunk's share of the gradients ``(dh, dw, db)`` (those not None): ``dh[rows] = g W``,
    ``dW += g^T h_c``, ``db += Σ_i g_i`` with ``g = coef ⊙ grad`` (paper Eq. 6 pushed through the
    head), where ``coef`` scales ``g W``'s rows and ``h_c``'s rows instead of ``g``."""
    dh, dw, db = grads
    g, coef = _operand(result, hc.dtype)
    if dh is not None:
        torch.mm(g, w, out=dh[rows])
        if coef is not None:
            dh[rows].mul_(coef.unsqueeze(-1))
    if dw is not None:
        accumulate_weight_grad(dw, g, hc if coef is None else hc * coef.unsqueeze(-1))
    if db is not None:
        db += result.grad.float().sum(0) if result.coef is None else torch.mv(result.grad.T, result.coef)


def _buffers(plan: Plan, rows: int, vocab: int, device) -> tuple:
    """``(logits buffer, gradient buffer)`` ``[rows, V]``, reused by every chunk: a gate
    objective's step writes its gradient over the logits (eager) or into a tensor of its own
    (compiled), so only distribution objectives have a second buffer."""
    zbuf = torch.empty(rows, vocab, dtype=plan.logits_dtype, device=device)
    return zbuf, (zbuf if plan.objective.kind == "gate" else torch.empty_like(zbuf))


def run_chunks(plan: Plan, h, w, b, *, scale=None, want=(False, False, False), want_stats=False) -> RunResult:
    """Run every chunk; the gradients asked for in ``want = (hidden, weight, bias)`` are those
    of ``Σ_i scale_i L_i`` (``scale`` None: all ones). A compiled step that fails under
    ``impl="auto"`` is reported once and the whole loop runs again with the eager one."""
    try:
        return _run_chunks(plan, h, w, b, scale, want, want_stats)
    except CompileFailed as failure:
        if plan.strict:  # the caller asked for the compiled step: its error stands
            raise failure.error from None
        fall_back(failure)
        plan.impl = "eager"
        return _run_chunks(plan, h, w, b, scale, want, want_stats)


def _run_chunks(plan: Plan, h, w, b, scale, want, want_stats) -> RunResult:
    want_h, want_w, want_b = want
    want_grad = any(want)
    m, vocab = h.shape[0], w.shape[0]
    losses = torch.empty(m, dtype=torch.float32, device=h.device)
    grads = (torch.empty_like(h) if want_h else None,
             torch.zeros(w.shape, dtype=torch.float32, device=w.device) if want_w else None,
             torch.zeros(vocab, dtype=torch.float32, device=w.device) if want_b else None)
    rows = min(plan.chunk_size, m)
    zbuf, gbuf = _buffers(plan, rows, vocab, h.device)
    work = workspaces(plan.frozen, rows, vocab, h.device) if plan.objective.kind != "gate" else {}
    step = step_for(plan.objective.kind)
    parts: dict[str, list] = {}
    selected = []
    for s in range(0, m, plan.chunk_size):
        e = min(s + plan.chunk_size, m)
        hc = h[s:e]
        ctx = ChunkContext(plan, s, e, logits_into(hc, w, b, out=zbuf[: e - s]), plan.labels[s:e], gbuf[: e - s],
                           losses[s:e], scale=None if scale is None else scale[s:e], want_grad=want_grad,
                           want_stats=want_stats, workspaces=work,
                           logits_of=lambda index, hc=hc: logits_into(hc[index], w, b))
        result: ChunkResult = step(ctx)
        for key, value in result.stats.items():
            parts.setdefault(key, []).append(value)
        if result.selected is not None:
            selected.append(result.selected)
        if want_grad:
            add_products(grads, result, hc, w, slice(s, e))
        del ctx, result
    stats = {key: torch.cat(values) for key, values in parts.items()}
    count = int(sum(selected)) if plan.objective.normalizer == "selected" else None
    return RunResult(losses, grads, stats, count)


def _cast_grads(grads, plan: Plan):
    dh, dw, db = grads
    return (dh, None if dw is None else dw.to(plan.weight_dtype), None if db is None else db.to(plan.bias_dtype))


class _SumFused(torch.autograd.Function):
    """``reduction="sum"``/``"mean"``: the loss and gradients were computed in one pass by
    :func:`run_chunks`; backward only scales the stored gradients by the upstream scalar."""

    @staticmethod
    def forward(ctx, h, w, b, loss, grads, plan):
        ctx.grads, ctx.plan = grads, plan
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_out):
        grads, ctx.grads = ctx.grads, None
        if not (grad_out.numel() == 1 and float(grad_out) == 1.0):
            grads = tuple(None if g is None else g.mul_(grad_out.to(g.dtype)) for g in grads)
        return (*_cast_grads(grads, ctx.plan), None, None, None)


class _NoneFused(torch.autograd.Function):
    """``reduction="none"``: per-token losses; backward recomputes the chunks with the
    per-token upstream gradient as ``scale``."""

    @staticmethod
    def forward(ctx, h, w, b, losses, plan):
        ctx.save_for_backward(h, w, b)
        ctx.plan = plan
        return losses.clone()

    @staticmethod
    def backward(ctx, grad_out):
        h, w, b = ctx.saved_tensors
        result = run_chunks(ctx.plan, h, w, b, scale=grad_out.float(), want=tuple(ctx.needs_input_grad[:3]))
        return (*_cast_grads(result.grads, ctx.plan), None, None)


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
    inputs: Optional[dict] = None,
    return_stats: bool = False,
    check_inputs: bool = True,
    impl: Optional[str] = None,
):
    """What :func:`deft.token_loss` returns for ``logits = hidden @ weight.T (+ bias)``,
    computed in chunks without materialising the ``[N, V]`` logits.

    Args:
        hidden: ``[N, H]`` (or ``[..., H]``) final hidden states; gradients flow to it.
        weight: ``[V, H]`` LM-head weight (tied embeddings included), same dtype as ``hidden``;
            gradients flow to it.
        labels: ``[N]`` (or ``[...]``) integer tensor aligned with ``hidden``; ``ignore_index``
            positions are dropped before the projection.
        objective: spec string or :class:`~deft.objectives.Objective`.
        bias: optional ``[V]`` LM-head bias.
        reduction: ``"sum"`` (default, so callers can normalise over a whole optimizer step with
            ``stats["num_tokens"]``), ``"mean"`` or ``"none"`` (per-token, 0 at ignored positions).
        chunk_size: rows per chunk; ``None`` picks one from N, H, V (:func:`auto_chunk_size`).
        ref_hidden, ref_weight: ``[N, H_r]`` and ``[V, H_r]`` of the frozen reference model
            (``sft_kl``, ``asft``); their logits are formed chunk by chunk, never differentiated.
        teacher_hidden, teacher_weight: the same for a teacher (``kd``, ``kd_hybrid``,
            ``target_sft``); the teacher's vocabulary must equal ``V``.
        old_logprobs: ``[N]`` old-policy log-probabilities of the labels (``psft``), <= 0.
        token_weights: ``[N]`` weights >= 0 multiplying each token's loss.
        inputs: any other input a need asks for (:data:`deft.objectives.NEEDS`), by argument
            name: ``<need>_hidden``/``<need>_weight``/``<need>_bias`` for a frozen model,
            ``<need>`` for a per-token tensor ``[N]``.
        return_stats: also return the per-token statistics dict described in
            :func:`deft.token_loss` (``p``, ``gate``, ``entropy``, ``focus``, ``mask``,
            ``num_tokens``). ``num_tokens`` is the denominator of ``"mean"``: the loss tokens, or
            the selected tokens of an objective normalised by them (``OnlyTopP-0.1``); it is 0
            when every label is ignored, so divide by ``max(stats["num_tokens"], 1)``.
        check_inputs: check the values of every input before any work: no NaN/inf in
            ``hidden``, ``weight`` and the frozen models' tensors (a ``-inf`` bias entry, a masked
            vocabulary entry, is allowed), ``token_weights >= 0``, log-probabilities ``<= 0``.
            It costs one sum per input (a read of each tensor, small next to the products) and
            one host synchronisation. Shapes, dtypes, devices and label types are always checked.
        impl: how a gate objective's chunk is computed (like ml-cross-entropy's ``impl=``):
            ``"eager"`` (torch operations; the softmax written over the fp32 logits chunk),
            ``"compile"`` (two ``torch.compile`` passes over the logits in the products' dtype,
            :mod:`deft.fused.compiled`) or ``"auto"`` (compiled on CUDA, eager elsewhere: on a
            CPU the compiled passes were measured slower). ``None``: the environment variable
            ``DEFT_FUSED_IMPL``, else ``"eager"``. Distribution and autograd objectives always
            run eagerly. Under ``"auto"`` a step that fails to compile is reported once and the
            eager one runs; a failure under ``"compile"`` is raised.

    bf16/fp16 inputs are multiplied in their dtype and everything after the product is fp32
    (the compiled gate step keeps the logits and ``g`` in the products' dtype, its statistics in
    fp32); the weight gradient is accumulated in fp32.
    """
    obj = resolve_objective(objective, reduction)
    named = dict(ref_hidden=ref_hidden, ref_weight=ref_weight, teacher_hidden=teacher_hidden,
                 teacher_weight=teacher_weight, old_logprobs=old_logprobs)
    call = prepare(obj, hidden, weight, labels, bias=bias, ignore_index=ignore_index, reduction=reduction,
                   chunk_size=chunk_size, named=named, inputs=inputs, token_weights=token_weights,
                   want_stats=return_stats, check_inputs=check_inputs, impl=impl)
    plan, h = call.plan, call.hidden
    grad_enabled = torch.is_grad_enabled()
    if reduction == "none":
        with torch.no_grad():
            result = run_chunks(plan, h.detach(), weight.detach(), None if bias is None else bias.detach(),
                                want_stats=return_stats)
        loss = _NoneFused.apply(h, weight, bias, result.losses, plan)
        loss = scatter_back(loss, call.index, labels.numel(), call.shape)
    else:
        want = tuple(bool(grad_enabled and t is not None and t.requires_grad) for t in (h, weight, bias))
        with torch.no_grad():
            result = run_chunks(plan, h.detach(), weight.detach(), None if bias is None else bias.detach(),
                                want=want, want_stats=return_stats)
        count = result.selected if result.selected is not None else result.losses.numel()
        grads = result.grads
        if reduction == "mean" and count:
            grads = tuple(None if g is None else g.div_(count) for g in grads)
        loss = _SumFused.apply(h, weight, bias, reduce(result.losses, count, reduction), grads, plan)
    if not return_stats:
        return loss
    return loss, _stats(result, call, obj)


def _stats(result: RunResult, call, obj) -> dict:
    """Per-token statistics at the labels' positions (0 elsewhere), the mask and the count."""
    stats = dict(result.stats)
    for key in ("p", "gate", "entropy") + (("focus",) if obj.definition.has_focus else ()):
        stats.setdefault(key, call.hidden.new_zeros(0, dtype=torch.float32))  # no loss token at all
    size = call.keep.numel()
    out = {key: scatter_back(value.float(), call.index, size, call.shape) for key, value in stats.items()}
    out["mask"] = call.keep.reshape(call.shape)
    out["num_tokens"] = int(result.selected if result.selected is not None else call.hidden.shape[0])
    return out
