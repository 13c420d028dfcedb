"""One fused elementwise kernel per chunk for gate objectives, compiled with ``torch.compile``.

Between the first product ``z = h_c W^T`` and the two gradient products ``dh_c = g W``,
``dW += g^T h_c``, a gate objective (``g = s (P - δ_y)``, paper Eq. 6 / 11-12) needs only
row-local work on the ``[c, V]`` chunk. The eager engine does it in about eight passes over the
chunk (row max, softmax into an fp32 buffer, gather, ``Σ P²`` row dots, the gate multiply, the
label scatter, the cast to the products' dtype). On a GPU each pass is bound by memory
bandwidth, so this module does the same math in the two passes a row's statistics allow:

1. ``row_stats`` (one compiled reduction over the chunk, reading ``z`` once in its own dtype):
   ``m = max_v z_v``, ``S1 = Σ e_v``, ``S2 = Σ e_v²``, ``Sz = Σ e_v (z_v - m)`` with
   ``e_v = exp(z_v - m)``, accumulated in fp32, giving
   ``lse = m + log S1``, ``log p = z_y - lse``, ``Σ_v P_v² = S2 / S1²`` (DEFT's focus, Eq. 20)
   and the entropy ``H = log S1 - Sz / S1`` (statistics), all ``[c]``;
2. the objective's gate ``s = -dL/dlog p`` from its declaration, on ``[c]`` vectors only
   (eager autograd, as in the engine; EAFT's top-k entropy is a ``[c, k]`` side computation);
3. ``write_grad`` (one compiled elementwise pass): ``g = coef (exp(z - lse) - δ_y)`` written
   directly in the products' dtype (bf16 stays bf16; no fp32 ``[c, V]`` buffer at all).

Both passes must see the whole row before any ``g`` can be written (the gate depends on
``lse`` and, for DEFT, on ``Σ P²``), so two reads of ``z`` and one write of ``g`` is the
minimum; Liger-Kernel's cross-entropy kernel makes the same two passes per row.

Call tree::

    fused_gate_loss(hidden, weight, labels, objective, kernel=...)   # gate objectives, sum / mean
      _GateLoss.forward -> _run_chunks
        per chunk: z = h_c W^T (+ b)            [c, V] in the inputs' dtype
                   gate_chunk(objective, z, y, kernel=...) -> (loss [c], g [c, V], stats)
                   dh_c = g W;  dW += g^T h_c   (dW accumulated in fp32)
    gate_chunk(..., kernel="compile"): row_stats -> gate -> write_grad   (compiled passes)
    gate_chunk(..., kernel="eager"):   the eager engine's math (the oracle)

``kernel`` is ``"eager"``, ``"compile"`` or ``"auto"`` (``compile`` on CUDA, ``eager``
elsewhere: on a CPU the passes are a small share of the products and inductor's C++ code was
measured slower, see ``benchmarks/compile_elementwise.py``).
"""

from __future__ import annotations

import copy
import inspect
import os
import warnings
from typing import Optional

import torch

from ..objectives import Objective, Tokens
from .common import check_aligned, check_labels, gate_terms_with_gate, reduce, resolve_objective, scatter_back

__all__ = ["KERNELS", "resolve_kernel", "gate_chunk", "gate_step", "fused_gate_loss", "accumulate_weight_grad"]

KERNELS = ("eager", "compile", "auto")
_COMPILED: dict = {}
_FAILED: list = []  # a compile failure under "auto": the engine's eager gate step from then on
_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def resolve_kernel(kernel: Optional[str], device) -> str:
    """``"eager"`` or ``"compile"`` for ``kernel`` on ``device``; ``None``: the environment
    variable ``DEFT_FUSED_KERNEL``, else ``"eager"``; ``"auto"``: compile on CUDA, eager elsewhere.
    The default stays eager until the compiled path has been measured on a GPU (docs/benchmarks/gpu.md);
    ``DEFT_FUSED_KERNEL=auto`` or ``compile`` opts in."""
    kernel = kernel or os.environ.get("DEFT_FUSED_KERNEL") or "eager"
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "auto":
        return "compile" if torch.device(device).type == "cuda" else "eager"
    return kernel


def _row_stats(z: torch.Tensor, y: torch.Tensor):
    """``(lse, logp, sum_p2, entropy)`` ``[c]`` of logits ``z`` ``[c, V]`` (any float dtype),
    in fp32 from one pass over the shifted exponentials ``e = exp(z - max)``."""
    zf = z.float()
    top = zf.amax(-1, keepdim=True)
    shifted = zf - top
    e = torch.exp(shifted)
    s1 = e.sum(-1)
    s2 = (e * e).sum(-1)
    # where e underflows to 0, z may be -inf (a masked entry): 0 * -inf counts as 0
    sz = torch.where(e > 0, e * shifted, torch.zeros_like(e)).sum(-1)
    log_s1 = torch.log(s1)
    lse = top.squeeze(-1) + log_s1
    logp = zf.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
    return lse, logp, s2 / (s1 * s1), (log_s1 - sz / s1).clamp_min(0.0)


def _write_grad(z: torch.Tensor, lse: torch.Tensor, coef: torch.Tensor, y: torch.Tensor, dtype: torch.dtype):
    """``g = coef (exp(z - lse) - δ_y)`` ``[c, V]`` in ``dtype`` (computed in fp32)."""
    probs = torch.exp(z.float() - lse.unsqueeze(-1))
    cols = torch.arange(z.shape[-1], device=z.device)
    hit = cols.unsqueeze(0) == y.unsqueeze(-1)
    return (torch.where(hit, probs - 1.0, probs) * coef.unsqueeze(-1)).to(dtype)


def _compiled(name: str):
    """The compiled form of ``_row_stats`` / ``_write_grad`` (shapes dynamic: the last, partial
    chunk and another vocabulary reuse the same code)."""
    if name not in _COMPILED:
        fn = {"row_stats": _row_stats, "write_grad": _write_grad}[name]
        _COMPILED[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _COMPILED[name]


def _token_inputs(inputs: Optional[dict]) -> dict:
    """Keyword arguments giving :class:`~deft.objectives.Tokens` the per-token and call-wide
    inputs (need field -> value, e.g. ``old_logprobs [c]``, ``batch_mean_p``): as one ``inputs``
    dict where ``Tokens`` takes one, else one keyword per input."""
    inputs = {key: value for key, value in (inputs or {}).items() if value is not None}
    if "inputs" in inspect.signature(Tokens.__init__).parameters:
        return {"inputs": inputs}
    return {key: inputs.get(key) for key in ("old_logprobs", "batch_mean_p")}


class _ChunkTokens(Tokens):
    """:class:`~deft.objectives.Tokens` over a chunk whose logits may be bf16: ``Σ P²`` and the
    entropy come precomputed from :func:`_row_stats`, the top-k entropy is taken in fp32."""

    def __init__(self, logp, logits, lse, sum_p2, entropy, **kw):
        super().__init__(logp, logits, lse, **kw)
        self._cache["sum_p2"] = sum_p2
        self._cache["entropy"] = entropy

    def with_logp(self, logp):
        other = copy.copy(self)  # shares the cache and the inputs, keeps this class
        other.logp = logp
        return other

    def topk_entropy(self, k: int) -> torch.Tensor:
        key = ("topk_entropy", k)
        if key not in self._cache:  # [c, k] only: the selection is exact in any dtype
            top = torch.topk(self._logits.detach(), min(k, self.vocab_size), dim=-1).values.float()
            logq = torch.log_softmax(top, dim=-1)
            self._cache[key] = -(logq.exp() * logq).sum(-1)
        return self._cache[key]


def _eager_tokens(z, y, inputs):
    """The eager engine's statistics: fp32 softmax of the chunk kept for ``Σ P²`` and ``g``."""
    zf = z.float()
    probs = torch.softmax(zf, dim=-1)
    lse = torch.logsumexp(zf, dim=-1)
    logp = zf.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
    return Tokens(logp, zf, lse, probs=probs, **_token_inputs(inputs)), probs, lse


def gate_chunk(
    objective: Objective,
    z: torch.Tensor,
    y: torch.Tensor,
    *,
    kernel: str = "eager",
    grad_dtype: Optional[torch.dtype] = None,
    token_weights: Optional[torch.Tensor] = None,
    scale: Optional[torch.Tensor] = None,
    inputs: Optional[dict] = None,
    want_grad: bool = True,
    want_stats: bool = False,
):
    """A gate objective on one chunk: ``(loss [c], g [c, V] or None, stats)``.

    ``z`` ``[c, V]`` are the chunk's logits in the products' dtype (fp32 or bf16), ``y`` ``[c]``
    its labels (loss tokens only); ``inputs`` the objective's other inputs for these rows (need
    field -> value: ``old_logprobs [c]``, ``batch_mean_p``). ``g = coef (P - δ_y)`` with
    ``coef = s * token_weights * scale`` (paper Eq. 6, 11-12; ``s = -dL/dlog p``) is returned in
    ``grad_dtype`` (default ``z.dtype``); statistics are computed in fp32 whatever the dtype. ``stats`` (with
    ``want_stats``) has ``p``, ``gate``, ``entropy`` and ``focus`` (objectives with a focus
    index) ``[c]``, as the engine's. ``kernel`` is ``"eager"`` (the engine's passes, the oracle)
    or ``"compile"`` (two compiled passes, see the module docstring).
    """
    if objective.kind != "gate":
        raise ValueError(f"gate_chunk runs gate objectives only; '{objective.spec}' is a {objective.kind} objective")
    grad_dtype = grad_dtype or z.dtype
    if kernel == "compile":
        lse, logp, sum_p2, entropy = _compiled("row_stats")(z, y)
        tokens = _ChunkTokens(logp, z, lse, sum_p2, entropy, **_token_inputs(inputs))
        probs = None
    elif kernel == "eager":
        tokens, probs, lse = _eager_tokens(z, y, inputs)
    else:
        raise ValueError(f"kernel must be 'eager' or 'compile' here, got {kernel!r}")
    terms, gate = gate_terms_with_gate(objective, tokens)
    loss = terms.loss.detach()
    if token_weights is not None:
        loss, gate = loss * token_weights, gate * token_weights
    stats = {}
    if want_stats:
        stats = {"p": tokens.logp.exp(), "gate": gate, "entropy": tokens.entropy}
        if terms.focus is not None:
            stats["focus"] = terms.focus.detach().float()
    if not want_grad:
        return loss, None, stats
    coef = gate if scale is None else gate * scale
    if probs is None:
        return loss, _compiled("write_grad")(z, lse, coef, y, grad_dtype), stats
    grad = probs.mul_(coef.unsqueeze(-1))
    grad.scatter_add_(-1, y.unsqueeze(-1), -coef.unsqueeze(-1))
    return loss, grad.to(grad_dtype), stats


def gate_step(ctx):
    """The gate path's per-chunk step in the engine's chunk loop (``ChunkContext ->
    ChunkResult``, as ``deft.fused.gate.gate_chunk``): the compiled kernel where
    :func:`resolve_kernel` picks it for the chunk's device (``DEFT_FUSED_KERNEL``: ``compile``,
    or ``auto`` on CUDA; default eager), else the engine's eager step. Losses go into ``ctx.losses``; the gradient
    is returned in the logits' dtype (the engine casts it for its products). Unless
    ``DEFT_FUSED_KERNEL=compile`` asked for it, a kernel that fails to compile is reported once
    and the eager step is used from then on."""
    from .context import ChunkResult
    from .gate import gate_chunk as eager_gate_chunk

    if _FAILED or resolve_kernel(None, ctx.logits.device) == "eager":
        return eager_gate_chunk(ctx)
    obj = ctx.objective
    by_selected = getattr(obj, "normalizer", "tokens") == "selected"
    try:
        loss, grad, stats = gate_chunk(obj, ctx.logits, ctx.labels, kernel="compile",
                                       token_weights=ctx.token_weights(), scale=ctx.scale, inputs=ctx.inputs(),
                                       want_grad=ctx.want_grad, want_stats=ctx.want_stats or by_selected)
    except Exception as err:  # noqa: BLE001 - a compiler or backend failure of any kind
        if os.environ.get("DEFT_FUSED_KERNEL") == "compile":
            raise
        _FAILED.append(err)
        warnings.warn(f"deft: the compiled fused-loss kernel failed ({type(err).__name__}: "
                      f"{str(err).splitlines()[0] if str(err) else ''}); using the eager engine "
                      "(set DEFT_FUSED_KERNEL=eager to skip the attempt)", RuntimeWarning, stacklevel=2)
        return eager_gate_chunk(ctx)
    ctx.losses.copy_(loss)
    selected = obj.selected(stats["p"]).sum() if by_selected else None
    return ChunkResult(grad, stats if ctx.want_stats else {}, selected)


def accumulate_weight_grad(dw: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> None:
    """``dW += g^T h`` into the fp32 ``dw`` ``[V, H]``: bf16 operands are multiplied in bf16 with
    fp32 output where the backend offers it (CUDA, torch >= 2.12: no ``[V, H]`` temporary),
    else through a temporary product."""
    if g.dtype == dw.dtype:
        dw.addmm_(g.T, h)
        return
    if dw.is_cuda and _TORCH_VERSION >= (2, 12):  # earlier out_dtype GEMMs lack the out= form
        try:
            torch.addmm(dw, g.T, h, out_dtype=dw.dtype, out=dw)
            return
        except (TypeError, RuntimeError):
            pass
    dw += (g.T @ h).float()


def _batch_mean_p(h, w, b, y, chunk: int, kernel: str) -> torch.Tensor:
    """Mean ``sg(p)`` over all loss tokens (``cayley_floor``'s batch floor): one logits pass."""
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    with torch.no_grad():
        for s in range(0, h.shape[0], chunk):
            z = h[s:s + chunk] @ w.T + (0 if b is None else b)
            stats = _compiled("row_stats")(z, y[s:s + chunk]) if kernel == "compile" else _row_stats(z, y[s:s + chunk])
            total += stats[1].exp().sum()
    return total / max(h.shape[0], 1)


def _run_chunks(obj, h, w, b, y, opts: dict, want: tuple):
    """Every chunk: per-token losses ``[M]``, gradients ``(dh, dW, db)`` of the summed loss
    (those asked for in ``want``) and the statistics."""
    m, chunk, kernel = h.shape[0], opts["chunk_size"], opts["kernel"]
    losses = torch.empty(m, dtype=torch.float32, device=h.device)
    dh = torch.empty_like(h) if want[0] else None
    dw = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if want[1] else None
    db = torch.zeros(w.shape[0], dtype=torch.float32, device=w.device) if want[2] else None
    parts: dict = {}
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        hc = h[s:e]
        z = hc @ w.T  # the products' dtype: a bf16 chunk stays bf16
        if b is not None:
            z += b.to(z.dtype)
        pick = lambda t: None if t is None else t[s:e]  # noqa: E731
        loss, g, stats = gate_chunk(obj, z, y[s:e], kernel=kernel, grad_dtype=h.dtype,
                                    token_weights=pick(opts["token_weights"]),
                                    inputs={"old_logprobs": pick(opts["old_logprobs"]),
                                            "batch_mean_p": opts["batch_mean_p"]}, want_grad=any(want),
                                    want_stats=opts["want_stats"])
        del z
        losses[s:e] = loss
        for key, value in stats.items():
            parts.setdefault(key, []).append(value)
        if g is None:
            continue
        if dh is not None:
            torch.mm(g, w, out=dh[s:e])
        if dw is not None:
            accumulate_weight_grad(dw, g, hc)
        if db is not None:
            db += g.float().sum(0)
        del g
    return losses, (dh, dw, db), {key: torch.cat(v) for key, v in parts.items()}


class _GateLoss(torch.autograd.Function):
    """Gradients are formed in forward (three products per chunk) and scaled in backward."""

    @staticmethod
    def forward(ctx, h, w, b, obj, y, opts):
        want = tuple(bool(n and opts["grad_enabled"]) for n in ctx.needs_input_grad[:3])
        losses, grads, stats = _run_chunks(obj, h, w, b, y, opts, want)
        opts["stats"] = stats
        count = losses.numel()
        if opts["reduction"] == "mean" and count:
            grads = tuple(None if g is None else g.div_(count) for g in grads)
        ctx.grads = grads
        ctx.dtypes = (w.dtype, None if b is None else b.dtype)
        return reduce(losses, count, opts["reduction"])

    @staticmethod
    def backward(ctx, grad_out):
        dh, dw, db = (None if g is None else g.mul_(grad_out.to(g.dtype)) for g in ctx.grads)
        ctx.grads = None
        dw = None if dw is None else dw.to(ctx.dtypes[0])
        db = None if db is None else db.to(ctx.dtypes[1])
        return dh, dw, db, None, None, None


def fused_gate_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    objective="deft",
    *,
    kernel: Optional[str] = "auto",
    bias: Optional[torch.Tensor] = None,
    ignore_index: int = -100,
    reduction: str = "sum",
    chunk_size: Optional[int] = None,
    old_logprobs: Optional[torch.Tensor] = None,
    token_weights: Optional[torch.Tensor] = None,
    return_stats: bool = False,
):
    """:func:`deft.fused_token_loss` for gate objectives with ``reduction="sum"``/``"mean"``,
    with the per-chunk work done by :func:`gate_chunk` (``kernel``: ``"eager"``, ``"compile"``,
    ``"auto"``) and bf16 kept throughout: for bf16 ``hidden``/``weight`` the logits chunk
    ``[c, V]`` is bf16, the statistics accumulate in fp32, ``g`` is written in bf16 for the two
    products and ``dW`` accumulates in fp32 (returned in the weight's dtype).

    ``hidden`` ``[..., H]``, ``weight`` ``[V, H]``, ``labels`` ``[...]``; the other arguments
    and the returned statistics are those of :func:`deft.fused_token_loss`.
    """
    from .chunked import auto_chunk_size

    obj = resolve_objective(objective, reduction)
    selected_mean = reduction == "mean" and getattr(obj, "normalizer", "tokens") != "tokens"
    if obj.kind != "gate" or reduction == "none" or selected_mean:
        raise ValueError(f"fused_gate_loss runs gate objectives with reduction 'sum' (or 'mean' over every loss "
                         f"token); got '{obj.spec}' ({obj.kind}) with '{reduction}': use deft.fused_token_loss")
    if hidden.shape[-1] != weight.shape[-1] or tuple(hidden.shape[:-1]) != tuple(labels.shape):
        raise ValueError(f"hidden [N, H], weight [V, H] and labels [N] must align: got {tuple(hidden.shape)}, "
                         f"{tuple(weight.shape)} and {tuple(labels.shape)}")
    if "old_logprobs" in obj.needs and old_logprobs is None:
        raise ValueError(f"objective '{obj.spec}' needs old-policy log-probabilities of the labels (old_logprobs)")
    check_aligned("old_logprobs", old_logprobs, labels.shape)
    check_aligned("token_weights", token_weights, labels.shape)
    shape, size, vocab = labels.shape, labels.numel(), weight.shape[0]
    flat = labels.reshape(-1)
    keep = flat != ignore_index
    check_labels(flat, vocab, keep)
    index = keep.nonzero().squeeze(-1)

    def pick(t):
        return None if t is None else t.reshape(size, *t.shape[labels.dim():]).index_select(0, index)

    h, y = pick(hidden), pick(flat).long()
    opts = dict(
        kernel=resolve_kernel(kernel, hidden.device), reduction=reduction, want_stats=return_stats,
        chunk_size=int(chunk_size or auto_chunk_size(h.shape[0], weight.shape[1], vocab)),
        old_logprobs=None if old_logprobs is None else pick(old_logprobs).detach().float(),
        token_weights=None if token_weights is None else pick(token_weights).detach().float(),
        batch_mean_p=None, grad_enabled=torch.is_grad_enabled(),
    )
    if opts["chunk_size"] < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    if "batch" in obj.needs:
        opts["batch_mean_p"] = _batch_mean_p(h.detach(), weight.detach(), None if bias is None else bias.detach(),
                                             y, opts["chunk_size"], opts["kernel"])
    loss = _GateLoss.apply(h, weight, bias, obj, y, opts)
    if not return_stats:
        return loss
    stats = opts["stats"]
    for key in ("p", "gate", "entropy") + (("focus",) if obj.definition.has_focus else ()):
        stats.setdefault(key, h.new_zeros(0, dtype=torch.float32))
    out = {key: scatter_back(v.float(), index, size, shape) for key, v in stats.items()}
    out.update(mask=keep.reshape(shape), num_tokens=int(h.shape[0]))
    return loss, out
