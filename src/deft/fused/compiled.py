"""The implementations of the gate step (``impl=``) and the compiled one's two passes.

Between the first product ``z = h_c W^T`` and the two gradient products, a gate objective
(``g = s (P - δ_y)``, paper Eq. 6 / 11-12) needs only row-local work on the ``[c, V]`` chunk.
:func:`deft.fused.gate.gate_chunk` does it one of two ways (``impl``):

* ``"eager"``: torch operations on the fp32 chunk (a softmax written over the logits); the
  default, and the oracle of the compiled one;
* ``"compile"``: the same math as two passes compiled with ``torch.compile``, reading the
  logits in the products' dtype (bf16 stays bf16):

  1. :func:`row_stats` (one reduction over the chunk): ``m = max_v z_v``, ``S1 = Σ e_v``,
     ``S2 = Σ e_v²``, ``Sz = Σ e_v (z_v - m)`` with ``e_v = exp(z_v - m)``, accumulated in fp32,
     giving ``lse = m + log S1``, ``log p = z_y - lse``, ``Σ_v P_v² = S2 / S1²`` (DEFT's focus,
     Eq. 20) and the entropy ``H = log S1 - Sz / S1``, all ``[c]``;
  2. :func:`write_grad` (one elementwise pass): ``g = coef (exp(z - lse) - δ_y)`` written in
     the products' dtype (no fp32 ``[c, V]`` buffer).

  Both must see the whole row before any ``g`` is written (the gate depends on ``lse`` and, for
  DEFT, on ``Σ P²``), so two reads of ``z`` and one write of ``g`` is the minimum; Liger-Kernel's
  cross-entropy kernel makes the same two passes per row.

On a GPU each elementwise pass is bound by memory bandwidth, which is what the compiled passes
save. On a CPU the eager path is faster (``benchmarks/compile_elementwise.py``,
``docs/benchmarks/fused_loss_cpu.md``), so ``"auto"`` never compiles there.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch

__all__ = ["IMPLS", "IMPL_ENV", "AUTO", "resolve_impl", "row_stats", "write_grad", "compiled", "run_compiled",
           "CompileFailed", "fall_back"]

IMPLS = ("eager", "compile", "auto")
IMPL_ENV = "DEFT_FUSED_IMPL"  # the implementation when the caller names none (default: eager)
# device type -> what "auto" runs there. CPU: eager, measured faster; CUDA: compiled, for the
# bandwidth argument above (not yet measured on a GPU: docs/benchmarks/gpu.md), hence opt-in
AUTO = {"cuda": "compile"}
_COMPILED: dict = {}
FAILED: list = []  # a compile failure under "auto": eager from then on, in this process


def resolve_impl(impl: Optional[str], device) -> str:
    """``"eager"`` or ``"compile"`` for ``impl`` on ``device``. ``None``: the environment
    variable ``DEFT_FUSED_IMPL``, else ``"eager"``; ``"auto"``: :data:`AUTO` for the device
    type (eager elsewhere, and eager everywhere once a compilation under ``"auto"`` failed)."""
    impl = impl or os.environ.get(IMPL_ENV) or "eager"
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "auto":
        return "eager" if FAILED else AUTO.get(torch.device(device).type, "eager")
    return impl


def row_stats(z: torch.Tensor, y: torch.Tensor):
    """``(lse, log p, Σ P², H)`` ``[c]`` of logits ``z`` ``[c, V]`` (any float dtype) and labels
    ``y`` ``[c]``, in fp32, from one pass over the shifted exponentials ``e = exp(z - max)``."""
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


def write_grad(z: torch.Tensor, lse: torch.Tensor, coef: torch.Tensor, y: torch.Tensor, dtype: torch.dtype):
    """``g = coef (exp(z - lse) - δ_y)`` ``[c, V]`` in ``dtype`` (computed in fp32)."""
    probs = torch.exp(z.float() - lse.unsqueeze(-1))
    cols = torch.arange(z.shape[-1], device=z.device)
    hit = cols.unsqueeze(0) == y.unsqueeze(-1)
    return (torch.where(hit, probs - 1.0, probs) * coef.unsqueeze(-1)).to(dtype)


def compiled(name: str):
    """The compiled form of :func:`row_stats` / :func:`write_grad` (shapes dynamic: the last,
    partial chunk and another vocabulary reuse the same code)."""
    if name not in _COMPILED:
        fn = {"row_stats": row_stats, "write_grad": write_grad}[name]
        _COMPILED[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _COMPILED[name]


class CompileFailed(RuntimeError):
    """A compiled pass failed (compiler or backend); ``error`` is what it raised."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def run_compiled(name: str, *args):
    """Run compiled pass ``name``; any failure of it is raised as :class:`CompileFailed`."""
    try:
        return compiled(name)(*args)
    except Exception as err:  # noqa: BLE001 - a compiler or backend failure of any kind
        raise CompileFailed(err) from err


def fall_back(failure: CompileFailed) -> None:
    """Record a failed compilation under ``"auto"`` and say once that the eager path runs."""
    err = failure.error
    first = str(err).splitlines()[0] if str(err) else ""
    FAILED.append(err)
    warnings.warn(f"deft: the compiled fused-loss step failed ({type(err).__name__}: {first}); using the eager "
                  f"one ({IMPL_ENV}=eager skips the attempt)", RuntimeWarning, stacklevel=4)
