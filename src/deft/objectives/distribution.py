"""Objectives whose target is a whole distribution: logit gradient ``g = c P - Q`` (paper, Appendix B).

Each takes :class:`~deft.objectives.base.Dists` (detached fp32 logits, ``lse``, labels and the
reference / teacher log-distributions) and returns :class:`~deft.objectives.base.CrossEntropyTargets`:
its loss written as cross-entropies to detached targets, so the engines know the logit
gradient in closed form. ``KL(A ‖ P) = CE(A ‖ P) - H(A)``, and ``H(A)`` is a detached constant.
"""

from __future__ import annotations

import torch

from .base import CrossEntropyTargets, Dists, Param, entropy_of
from .registry import register


def kl_to_model(weight, target_logP: torch.Tensor) -> dict:
    """``weight * KL(π_target ‖ π_θ)`` as :class:`CrossEntropyTargets` fields: ``weight * CE(π_target ‖ P)``
    plus the constant ``-weight * H(π_target)``."""
    return dict(dists=((weight, target_logP),), const=-weight * entropy_of(target_logP))


@register(
    "label_smoothing", "distribution", "label smoothing -[(1-lam) log p + (lam/V) sum_v log P_v]",
    params={"lam": Param(0.1, "smoothing mass in [0, 1]", min=0.0, max=1.0)},
)
def label_smoothing(d: Dists, lam: float) -> CrossEntropyTargets:
    return CrossEntropyTargets(label=1.0 - lam, uniform=lam)


@register(
    "sft_kl", "distribution", "SFT + KL: -log p + lam KL(pi_ref || pi_theta) (needs a reference model)",
    params={"lam": Param(0.1, "KL weight >= 0", min=0.0)}, needs=("ref",),
)
def sft_kl(d: Dists, lam: float) -> CrossEntropyTargets:
    return CrossEntropyTargets(label=1.0, **kl_to_model(lam, d.ref_logP))


@register(
    "asft", "distribution", "anchored SFT: -sg(p) log p + lam KL(pi_base || pi_theta) (needs the base model)",
    params={"lam": Param(0.1, "KL weight >= 0", min=0.0)}, needs=("ref",),
)
def asft(d: Dists, lam: float) -> CrossEntropyTargets:
    return CrossEntropyTargets(label=d.p, **kl_to_model(lam, d.ref_logP))


@register(
    "gem", "distribution", "GEM: -log p + sum_v q_v log P_v, q = sg(softmax(z / beta)); keeps diversity",
    params={"beta": Param(0.7, "temperature of the self-target q, > 0", min=0.0, min_exclusive=True)},
)
def gem(d: Dists, beta: float) -> CrossEntropyTargets:
    # Σ_v q_v log P_v = -CE(q ‖ P): a target with weight -1 (gradient q - δ_y)
    return CrossEntropyTargets(label=1.0, dists=((-1.0, torch.log_softmax(d.logits / beta, dim=-1)),))


@register("kd", "distribution", "knowledge distillation -sum_v pi_T(v) log P_v (needs a teacher)", needs=("teacher",))
def kd(d: Dists) -> CrossEntropyTargets:
    return CrossEntropyTargets(dists=((1.0, d.teacher_logP),))


@register(
    "kd_hybrid", "distribution", "hybrid KD: (1-lam)(-log p) + lam KL(pi_T || pi_theta) (needs a teacher)",
    params={"lam": Param(0.5, "distillation weight in [0, 1]", min=0.0, max=1.0)}, needs=("teacher",),
)
def kd_hybrid(d: Dists, lam: float) -> CrossEntropyTargets:
    return CrossEntropyTargets(label=1.0 - lam, **kl_to_model(lam, d.teacher_logP))


@register(
    "target_sft", "distribution",
    "Target-SFT: CE to Q = sg(p) delta_y + (1-sg(p)) pi~, pi~ ~ sg(P)^(1-eta) pi_T^eta (needs a teacher)",
    params={"eta": Param(0.5, "teacher share of the fallback distribution in [0, 1]", min=0.0, max=1.0)},
    needs=("teacher",),
)
def target_sft(d: Dists, eta: float) -> CrossEntropyTargets:
    # π~ ∝ P^(1-η) π_T^η = softmax((1-η) z + η log π_T): lse shifts cancel in the softmax
    guided = torch.log_softmax((1.0 - eta) * d.logits + eta * d.teacher_logP, dim=-1)
    p = d.p
    return CrossEntropyTargets(label=p, dists=((1.0 - p, guided),))
