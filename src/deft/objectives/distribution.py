"""Objectives whose target is a whole distribution (``g = P - Q``, design brief section 1).

Each takes :class:`~deft.objectives.base.Dists` (``logP [n, V]`` differentiable, fp32) and is
differentiated by autograd per chunk. ``KL(a ‖ b) = Σ_v a_v (log a_v - log b_v)``.
"""

from __future__ import annotations

import torch

from .base import Dists, Param, Terms
from .registry import register


def kl_to_model(target_logP: torch.Tensor, logP: torch.Tensor) -> torch.Tensor:
    """``KL(π_target ‖ π_θ)`` per row ``[n]``; ``target_logP`` is detached, ``0 log 0 = 0``."""
    target = target_logP.exp()
    return (target * (target_logP - logP)).nan_to_num(nan=0.0).sum(-1)


def cross_entropy_to(target: torch.Tensor, logP: torch.Tensor) -> torch.Tensor:
    """``-Σ_v Q_v log P_v`` per row ``[n]`` for a detached target ``Q [n, V]``."""
    return -(target * logP).sum(-1)


@register(
    "label_smoothing", "distribution", "label smoothing -[(1-lam) log p + (lam/V) sum_v log P_v]",
    params={"lam": Param(0.1, "smoothing mass in [0, 1]", min=0.0, max=1.0)},
)
def label_smoothing(d: Dists, lam: float) -> Terms:
    return Terms(-((1.0 - lam) * d.logp + lam * d.logP.mean(-1)))


@register(
    "sft_kl", "distribution", "SFT + KL: -log p + lam KL(pi_ref || pi_theta) (needs a reference model)",
    params={"lam": Param(0.1, "KL weight >= 0", min=0.0)}, needs=("ref",),
)
def sft_kl(d: Dists, lam: float) -> Terms:
    return Terms(-d.logp + lam * kl_to_model(d.ref_logP, d.logP))


@register(
    "asft", "distribution", "anchored SFT: -sg(p) log p + lam KL(pi_base || pi_theta) (needs the base model)",
    params={"lam": Param(0.1, "KL weight >= 0", min=0.0)}, needs=("ref",),
)
def asft(d: Dists, lam: float) -> Terms:
    return Terms(-d.logp.detach().exp() * d.logp + lam * kl_to_model(d.ref_logP, d.logP))


@register(
    "gem", "distribution", "GEM: -log p + sum_v q_v log P_v, q = sg(softmax(z / beta)); keeps diversity",
    params={"beta": Param(0.7, "temperature of the self-target q, > 0", min=0.0, min_exclusive=True)},
)
def gem(d: Dists, beta: float) -> Terms:
    q = torch.softmax(d.logP.detach() / beta, dim=-1)
    return Terms(-d.logp - cross_entropy_to(q, d.logP))


@register("kd", "distribution", "knowledge distillation -sum_v pi_T(v) log P_v (needs a teacher)", needs=("teacher",))
def kd(d: Dists) -> Terms:
    return Terms(cross_entropy_to(d.teacher_logP.exp(), d.logP))


@register(
    "kd_hybrid", "distribution", "hybrid KD: (1-lam)(-log p) + lam KL(pi_T || pi_theta) (needs a teacher)",
    params={"lam": Param(0.5, "distillation weight in [0, 1]", min=0.0, max=1.0)}, needs=("teacher",),
)
def kd_hybrid(d: Dists, lam: float) -> Terms:
    return Terms(-(1.0 - lam) * d.logp + lam * kl_to_model(d.teacher_logP, d.logP))


@register(
    "target_sft", "distribution",
    "Target-SFT: CE to Q = sg(p) delta_y + (1-sg(p)) pi~, pi~ ~ sg(P)^(1-eta) pi_T^eta (needs a teacher)",
    params={"eta": Param(0.5, "teacher share of the fallback distribution in [0, 1]", min=0.0, max=1.0)},
    needs=("teacher",),
)
def target_sft(d: Dists, eta: float) -> Terms:
    logP = d.logP.detach()
    guided = torch.softmax((1.0 - eta) * logP + eta * d.teacher_logP, dim=-1)
    p = d.logp.detach().exp().unsqueeze(-1)
    target = (1.0 - p) * guided
    target = target.scatter_add(-1, d.labels.unsqueeze(-1), p)
    return Terms(cross_entropy_to(target, d.logP))
