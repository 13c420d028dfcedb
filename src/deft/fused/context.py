"""What one chunk of the fused loss works on: the plan of the call, the per-chunk context and
result, and the buffer operations that write into preallocated ``[rows, V]`` tensors.

Names used throughout the engine: ``M`` loss tokens, ``V`` vocabulary, ``H`` hidden size,
``n`` rows of the current chunk (or row sub-block), ``z`` the chunk's fp32 logits ``[n, V]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import torch

from ..objectives import Objective

__all__ = ["FrozenRows", "Plan", "ChunkContext", "ChunkResult", "logits_into", "softmax_into",
           "softmax_and_lse_into", "log_softmax_into", "probs_entropy", "row_dot"]


@dataclass
class FrozenRows:
    """A frozen model (reference, teacher, ...) whose log-probabilities a need asks for: its
    hidden states, read a chunk of rows at a time so they are never copied whole.

    ``hidden`` is ``[M, H']`` (``index`` None), the full ``[N, H']`` with ``index [M]`` picking
    the loss tokens, or a non-contiguous ``[..., H']`` with ``index`` a tuple of leading-dim
    indices ``([M], ...)``. ``weight [V, H']`` and ``bias [V]`` (or None) form its logits.
    """

    hidden: torch.Tensor
    weight: torch.Tensor
    bias: Optional[torch.Tensor] = None
    index: object = None

    def rows(self, start: int, end: int) -> torch.Tensor:
        """Hidden states ``[end - start, H']`` of loss tokens ``start:end``."""
        if self.index is None:
            return self.hidden[start:end]
        if isinstance(self.index, tuple):
            return self.hidden[tuple(i[start:end] for i in self.index)]
        return self.hidden.index_select(0, self.index[start:end])


@dataclass
class Plan:
    """Everything the chunk loop needs besides the differentiable ``hidden``, ``weight``, ``bias``.

    ``labels [M]`` of the loss tokens; ``frozen``: need name -> :class:`FrozenRows`;
    ``token_inputs``: need field -> ``[M]`` tensor (e.g. ``old_logprobs``); ``statistics``:
    need field -> value over all loss tokens (e.g. ``batch_mean_p``); ``token_weights [M]``;
    ``impl``: the gate step's implementation (``"eager"`` or ``"compile"``, :mod:`.compiled`),
    ``strict`` when the caller named ``"compile"`` (a failure to compile is then an error).
    """

    objective: Objective
    labels: torch.Tensor
    chunk_size: int
    reduction: str
    frozen: dict = field(default_factory=dict)
    token_inputs: dict = field(default_factory=dict)
    statistics: dict = field(default_factory=dict)
    token_weights: Optional[torch.Tensor] = None
    want_stats: bool = False
    weight_dtype: torch.dtype = torch.float32
    bias_dtype: Optional[torch.dtype] = None
    impl: str = "eager"
    strict: bool = False

    @property
    def logits_dtype(self) -> torch.dtype:
        """The dtype of the chunk's logits: fp32, or the products' dtype for the compiled gate step."""
        return self.weight_dtype if self.impl == "compile" and self.objective.kind == "gate" else torch.float32


@dataclass
class ChunkContext:
    """One chunk (or a row sub-block of one): loss tokens ``start:end`` of the plan.

    ``logits`` ``z [n, V]`` fp32 (read-only); ``labels [n]``; ``grad_out [n, V]``: the buffer the
    gradient ``g = dL/dz`` is written into (it may first hold a frozen model's logits, see
    ``staged``); ``losses [n]``: where the per-token losses go; ``scale [n]``: the upstream
    per-token gradient when ``reduction="none"`` is differentiated, else None; ``workspaces``:
    ``[rows, V]`` buffers per frozen model (plus ``"scratch"`` for the logits of a second one).
    """

    plan: Plan
    start: int
    end: int
    logits: torch.Tensor
    labels: torch.Tensor
    grad_out: torch.Tensor
    losses: torch.Tensor
    scale: Optional[torch.Tensor] = None
    want_grad: bool = True
    want_stats: bool = False
    workspaces: dict = field(default_factory=dict)
    staged: Optional[str] = None  # the frozen model whose logits grad_out holds on entry
    logits_of: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    @property
    def objective(self) -> Objective:
        return self.plan.objective

    def sub_block(self, a: int, b: int) -> "ChunkContext":
        """Rows ``a:b`` of this chunk, sharing its buffers (workspaces cut to ``b - a`` rows)."""
        return replace(
            self, start=self.start + a, end=self.start + b, logits=self.logits[a:b], labels=self.labels[a:b],
            grad_out=self.grad_out[a:b], losses=self.losses[a:b],
            scale=None if self.scale is None else self.scale[a:b],
            workspaces={key: t[: b - a] for key, t in self.workspaces.items()},
        )

    def token_weights(self) -> Optional[torch.Tensor]:
        """``[n]`` loss weights of these rows, or None."""
        w = self.plan.token_weights
        return None if w is None else w[self.start:self.end]

    def inputs(self) -> dict:
        """Need field -> value for these rows (per-token inputs and call-wide statistics)."""
        rows = {key: t[self.start:self.end] for key, t in self.plan.token_inputs.items()}
        return {**self.plan.statistics, **rows}


@dataclass
class ChunkResult:
    """What a chunk step returns: its gradient ``[n, V]`` (None when not asked for), its
    per-token statistics (``p``, ``gate``, ``entropy``, ``focus``: ``[n]`` each) and, for
    objectives normalised by their selected tokens, how many of its rows were selected.

    With ``coef [n]`` the gradient is ``coef_i * grad_i``: ``grad`` holds the unscaled
    ``P - δ_y`` and the chunk loop applies ``coef`` to the ``[n, H]`` side of the products."""

    grad: Optional[torch.Tensor]
    stats: dict
    selected: Optional[torch.Tensor] = None
    coef: Optional[torch.Tensor] = None


def logits_into(h: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], out: Optional[torch.Tensor] = None):
    """Logits ``h @ w.T (+ b)`` ``[n, V]``: fp32, or written into ``out`` in its dtype (the
    product in the inputs' dtype, the bias added in ``out``'s)."""
    if out is not None and h.dtype == w.dtype == out.dtype:
        z = torch.mm(h, w.T, out=out)
    elif out is not None:
        z = out.copy_(h @ w.T)
    else:
        z = (h @ w.T).float()
    if b is not None:
        z += b.to(z.dtype)
    return z


def softmax_into(z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Row softmax of ``z`` written into ``out``: one row-local kernel, no new allocation."""
    try:
        return torch.ops.aten._softmax.out(z, -1, False, out=out)
    except (RuntimeError, AttributeError):  # pragma: no cover - backends without the out= kernel
        return out.copy_(torch.softmax(z, dim=-1))


def softmax_and_lse_into(z: torch.Tensor, out: torch.Tensor):
    """``P = softmax(z)`` written into ``out`` ``[n, V]`` and ``lse`` ``[n]`` from it:
    ``lse = max_v z_v - log max_v P_v`` is exact (the largest probability sits at the largest
    logit and is at least ``1/V``, so it never underflows); two value-only row maxima, no argmax."""
    top = z.amax(dim=-1)
    probs = softmax_into(z, out)
    return probs, top - probs.amax(dim=-1).log()


def log_softmax_into(t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Row ``log_softmax`` of logits ``t`` ``[n, V]`` written into ``out`` (not aliasing ``t``):
    one row-local kernel, no ``[n, V]`` allocation."""
    return torch.ops.aten._log_softmax.out(t, -1, False, out=out)


_BLOCK_BYTES = 4 << 20  # rows per block of a row pass with a temporary: a few MiB, so the block stays in cache


def probs_entropy(probs: torch.Tensor) -> torch.Tensor:
    """``H = -Σ_v P_v log P_v`` ``[n]`` of probabilities ``[n, V]`` (``0 log 0 = 0``), a block
    of rows at a time so the ``[rows, V]`` temporary stays small."""
    n, vocab = probs.shape
    rows = max(1, min(n, _BLOCK_BYTES // (4 * max(vocab, 1))))
    out = torch.empty(n, dtype=torch.float32, device=probs.device)
    scratch = torch.empty(rows, vocab, dtype=torch.float32, device=probs.device)
    for a in range(0, n, rows):
        block = probs[a:a + rows]
        torch.special.entr(block, out=scratch[: block.shape[0]])
        torch.sum(scratch[: block.shape[0]], -1, out=out[a:a + rows])
    return out


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_v a_v b_v`` per row ``[n]`` of two ``[n, V]`` row blocks (small: the temporary product
    stays in cache; a batched matrix product of 1 x V rows is several times slower on a CPU)."""
    return (a * b).sum(-1)
