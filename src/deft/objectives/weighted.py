"""NLL with a detached per-token weight: EAFT, ProFiT, Proximal SFT (gate objectives).

Each has gradient ``w (P - δ_y)`` with ``w`` computed from detached model quantities.
"""

from __future__ import annotations

import math

import torch

from .base import Param, PerTokenLoss, Tokens
from .registry import register


@register(
    "eaft", "gate", "entropy-aware FT: -sg((H_k/ln k)^gamma) log p, H_k = entropy of the renormalised top-k",
    params={"k": Param(20, "top-k size for the entropy (>= 2)", min=2),
            "gamma": Param(1.0, "exponent on the normalised entropy", min=0.0)},
)
def eaft(t: Tokens, k: int, gamma: float) -> PerTokenLoss:
    k_eff = min(k, t.vocab_size)
    if k_eff < 2:
        raise ValueError("objective 'eaft' needs a vocabulary of at least 2 tokens")
    weight = (t.topk_entropy(k_eff) / math.log(k_eff)).clamp(0.0, 1.0) ** gamma
    return PerTokenLoss(-weight * t.logp)


@register(
    "profit", "gate", "ProFiT: NLL only on tokens with sg(p) >= tau (direction=higher) or p < tau (lower)",
    params={"tau": Param(0.1, "probability threshold in [0, 1]", min=0.0, max=1.0),
            "direction": Param("higher", "keep tokens above (higher) or below (lower) tau",
                               choices=("higher", "lower"))},
)
def profit(t: Tokens, tau: float, direction: str) -> PerTokenLoss:
    keep = t.p >= tau if direction == "higher" else t.p < tau
    return PerTokenLoss(-keep.to(t.logp.dtype) * t.logp)


@register(
    "psft", "gate",
    "Proximal SFT: -min(r, clip(r, 1-eps_low, 1+eps_high)), r = p / p_old (needs old_logprobs)",
    params={"eps_low": Param(0.2, "lower clip range", min=0.0, max=1.0),
            "eps_high": Param(0.28, "upper clip range", min=0.0)},
    needs=("old_logprobs",),
)
def psft(t: Tokens, eps_low: float, eps_high: float) -> PerTokenLoss:
    # With the advantage fixed at +1 only the upper clip can bind: tokens whose ratio already
    # exceeds 1 + eps_high get no gradient; below 1 - eps_low, min() picks the unclipped r.
    ratio = torch.exp(t.logp - t.old_logprobs.to(t.logp.dtype))
    return PerTokenLoss(-torch.minimum(ratio, ratio.clamp(1.0 - eps_low, 1.0 + eps_high)))
