"""Tests of deft.objectives.distribution: objectives whose target is a whole distribution: logit
gradient ``g = c P - Q`` (paper, Appendix B)."""

import math

import pytest
import torch

import deft

from objectives_helpers import V


# ---------------------------------------------------------------- closed forms
@pytest.mark.parametrize("name,expected", [
    ("nll", math.log(V)),
    ("p", 1 - 1 / V),
    ("dft", math.log(V) / V),
    ("power", (1 - (1 / V) ** 0.5) / 0.5),
    ("deft", (1 - (1 / V) ** (1 / V)) * V),  # Σ P² = 1/V for uniform logits
    ("cayley", None),
    ("eaft", math.log(V)),  # top-k of a uniform distribution has maximal entropy: weight 1
    ("profit", 0.0),  # p = 1/V < tau = 0.1
    ("label_smoothing", math.log(V)),
    ("gem", 0.0),  # q is uniform too: -log p + Σ q log P = log V - log V
    ("kd", math.log(V)),
    ("kd_hybrid", 0.5 * math.log(V)),  # teacher = model: KL = 0
    ("target_sft", math.log(V)),
    ("sft_kl", math.log(V)),
    ("asft", math.log(V) / V),
    ("psft", -1.0),  # old policy = current policy: r = 1
    ("cayley_floor", None),
])
def test_closed_form_on_uniform_logits(name, expected):
    z = torch.zeros(3, V)
    y = torch.tensor([0, 7, V - 1])
    kw = {"ref_logits": z, "teacher_logits": z, "old_logprobs": torch.full((3,), -math.log(V))}
    loss = deft.token_loss(z, y, name, reduction="none", **kw)
    if name == "cayley":
        p = 1 / V
        a = (1 - math.sqrt(1 - p)) / (1 + math.sqrt(1 - p))
        expected = (1 - p ** a) / a
    if name == "cayley_floor":
        p = 1 / V
        f = 0.5 * p
        a = max(f + (1 - f) * p / (2 - p), 0.001)
        expected = (1 - p ** a) / a
    torch.testing.assert_close(loss, torch.full((3,), expected), rtol=1e-5, atol=1e-6)
