"""Tests of deft.fused.plain: the plain full-logits loss: every objective from materialised logits, by
autograd."""

import pytest
import torch

import deft

from objectives_helpers import V, extras, random_case


# ---------------------------------------------------------------- reductions, weights, stats
def test_reductions_and_shapes():
    z = torch.randn(3, 4, V)
    y = torch.randint(0, V, (3, 4))
    y[0, :2] = -100
    none = deft.token_loss(z, y, "deft", reduction="none")
    assert none.shape == (3, 4) and torch.all(none[0, :2] == 0)
    torch.testing.assert_close(deft.token_loss(z, y, "deft", reduction="sum"), none.sum())
    torch.testing.assert_close(deft.token_loss(z, y, "deft", reduction="mean"), none.sum() / 10)
    with pytest.raises(ValueError, match="reduction"):
        deft.token_loss(z, y, "deft", reduction="avg")


def test_token_weights_multiply_loss_and_gradient():
    z, y = random_case(seed=10)
    w = torch.rand(z.shape[0], dtype=torch.float64)
    w[3] = 0.0
    for name in ("deft", "kd"):
        kw = extras(z)
        z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
        l1 = deft.token_loss(z1, y, name, reduction="none", token_weights=w, **kw)
        l2 = deft.token_loss(z2, y, name, reduction="none", **kw)
        torch.testing.assert_close(l1, (l2 * w).float())
        l1.sum().backward()
        (l2 * w).sum().backward()
        torch.testing.assert_close(z1.grad, z2.grad)


def test_stats_contents():
    z, y = random_case(seed=11)
    y[0] = -100
    _, stats = deft.token_loss(z, y, "deft", return_stats=True)
    assert stats["num_tokens"] == len(y) - 1
    assert stats["mask"].tolist() == (y != -100).tolist()
    for key in ("p", "gate", "focus", "entropy"):
        assert stats[key].shape == y.shape and stats[key][0] == 0
    probs = torch.softmax(z[1:], -1)
    torch.testing.assert_close(stats["entropy"][1:].double(), -(probs * probs.log()).sum(-1), rtol=1e-5, atol=1e-6)
    _, stats = deft.token_loss(z, y, "nll", return_stats=True)
    assert "focus" not in stats


def test_missing_extra_inputs_and_bad_labels_raise():
    z, y = random_case()
    with pytest.raises(ValueError, match="teacher model.*teacher_logits"):
        deft.token_loss(z, y, "kd")
    with pytest.raises(ValueError, match="reference model.*ref_logits"):
        deft.token_loss(z, y, "sft_kl")
    with pytest.raises(ValueError, match="old_logprobs"):
        deft.token_loss(z, y, "psft")
    with pytest.raises(ValueError, match="same vocabulary"):
        deft.token_loss(z, y, "kd", teacher_logits=z[:, :-1])
    bad = y.clone()
    bad[0] = V
    with pytest.raises(ValueError, match="outside the vocabulary"):
        deft.token_loss(z, bad, "nll")
    with pytest.raises(ValueError, match="align"):
        deft.token_loss(z, y[:-1], "nll")
