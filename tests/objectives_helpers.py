"""Helpers shared by test_fused_plain.py, test_objectives_base.py, test_objectives_deformed_log.py,
test_objectives_distribution.py, test_objectives_registry.py and test_objectives_weighted.py."""

from __future__ import annotations

import torch

V = 53


def extras(z, seed=1):
    """Reference/teacher logits and old log-probs for objectives that need them."""
    g = torch.Generator().manual_seed(seed)
    other = z.detach() + torch.randn(z.shape, generator=g, dtype=z.dtype)
    old = torch.log_softmax(other, -1).max(-1).values - 1.0
    return {"ref_logits": other, "teacher_logits": other, "old_logprobs": old}


def random_case(n=11, vocab=V, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, vocab, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, vocab, (n,), generator=g)
    y[::2] = z[::2].argmax(-1)  # mix confident and unlikely targets
    return z, y
