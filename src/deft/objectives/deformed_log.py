"""The deformed-log family ``L_a(p) = (1 - p^a)/a`` and its members (paper Sections 3-5).

Every member is a gate objective: ``dL/dz = s(p) (P - δ_y)`` with gate ``s = p^a``
(Eq. 11-12) and learning signal ``W(p) = s(p)(1 - p)`` (Eq. 7). The focus index ``a`` is a
constant (``power``), a function of ``p`` (``cayley``, Eq. 17), the reference code's batch-floored
variant (``cayley_floor``) or the distribution concentration ``Σ_v P_v²`` (``deft``, Eq. 20);
``a`` is always detached, so only ``p^a`` gates the update.
"""

from __future__ import annotations

import torch

from .base import Param, PerTokenLoss, Tokens, deformed_log_loss
from .registry import register


@register("nll", "gate", "negative log-likelihood -log p: standard SFT, gate s = 1")
def nll(t: Tokens) -> PerTokenLoss:
    return PerTokenLoss(-t.logp)


@register("p", "gate", "linear probability loss 1 - p (the paper's '-p'), gate s = p", has_focus=True)
def prob(t: Tokens) -> PerTokenLoss:
    return PerTokenLoss(-torch.expm1(t.logp), focus=torch.ones_like(t.logp.detach()))


@register("dft", "gate", "Dynamic Fine-Tuning -sg(p) log p (arXiv 2508.05629): same gradient as 'p'")
def dft(t: Tokens) -> PerTokenLoss:
    return PerTokenLoss(-t.p * t.logp)


@register(
    "power", "gate", "deformed-log (1 - p^a)/a with fixed focus a (Tsallis q-log, q = 1-a; GCE); a=0 is NLL",
    params={"alpha": Param(0.5, "focus index a >= 0", min=0.0)}, has_focus=True,
)
def power(t: Tokens, alpha: float) -> PerTokenLoss:
    return PerTokenLoss(deformed_log_loss(t.logp, alpha), focus=torch.full_like(t.logp.detach(), alpha))


def cayley_focus(logp: torch.Tensor) -> torch.Tensor:
    """``α*(p) = (1 - √(1-p)) / (1 + √(1-p)) = tanh(-ln(1-p)/4)`` (paper Eq. 17-19).

    Written as ``p / (1 + √(1-p))²`` with ``1 - p = -expm1(log p)`` so neither tiny nor
    near-one ``p`` loses precision.
    """
    logp = logp.detach()
    root = torch.sqrt((-torch.expm1(logp)).clamp_min(0.0))
    return logp.exp() / (1.0 + root) ** 2


@register("cayley", "gate", "Cayley-transform focus a = (1-sqrt(1-p))/(1+sqrt(1-p)) (paper Eq. 17), parameter-free",
          has_focus=True)
def cayley(t: Tokens) -> PerTokenLoss:
    a = cayley_focus(t.logp)
    return PerTokenLoss(deformed_log_loss(t.logp, a), focus=a)


@register(
    "cayley_floor", "gate",
    "reference code's Cayley_Trans: a = clamp(f + (1-f) p/(2-p), 0.001, 1), f = 0.5 mean(p) over the batch",
    needs=("batch",), has_focus=True,
)
def cayley_floor(t: Tokens) -> PerTokenLoss:
    p = t.p
    floor = 0.5 * t.batch_mean_p
    a = (floor + (1.0 - floor) * p / (2.0 - p)).clamp(0.001, 1.0)
    return PerTokenLoss(deformed_log_loss(t.logp, a), focus=a)


@register("deft", "gate", "DEFT: deformed-log with focus a = sum_v P_v^2 (paper Eq. 20), parameter-free",
          has_focus=True)
def deft(t: Tokens) -> PerTokenLoss:
    a = t.sum_p2
    return PerTokenLoss(deformed_log_loss(t.logp, a), focus=a)
