"""Tests of deft.objectives.base: what an objective is: a small declaration the engines evaluate."""

import pytest
import torch

import deft
from deft.objectives import REGISTRY

from objectives_helpers import V, extras, random_case
from reference_formulas import FORMULAS, GATES

ALL = list(REGISTRY)


@pytest.mark.parametrize("name", ["nll", "p", "dft", "power", "cayley", "deft", "eaft", "label_smoothing", "gem"])
def test_near_one_hot_logits_give_near_zero_loss(name):
    z = torch.zeros(2, V)
    z[0, 3] = z[1, 5] = 40.0
    loss = deft.token_loss(z, torch.tensor([3, 5]), name, reduction="none")
    if name == "label_smoothing":  # the smoothing term keeps lam * 40 (V-1)/V: log P = -40 off the label
        torch.testing.assert_close(loss, torch.full((2,), 0.1 * 40 * (V - 1) / V))
    else:
        assert torch.all(loss.abs() < 1e-6)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", ALL)
def test_loss_and_gradient_match_textbook_autograd(name):
    z, y = random_case()
    kw = extras(z)
    z1 = z.clone().requires_grad_(True)
    ours = deft.token_loss(z1, y, name, reduction="none", **kw)
    ours.sum().backward()
    z2 = z.clone().requires_grad_(True)
    ref = FORMULAS[name](z2, y, **kw)
    ref.sum().backward()
    torch.testing.assert_close(ours.double(), ref, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", list(GATES))
def test_gate_objectives_follow_gate_times_error(name):
    """Paper Eq. 6: dL/dz = s(p) (P - δ_y) with the objective's gate s."""
    z, y = random_case(seed=3)
    z.requires_grad_(True)
    loss, stats = deft.token_loss(z, y, name, reduction="sum", return_stats=True)
    loss.backward()
    probs = torch.softmax(z.detach(), -1)
    p = probs.gather(-1, y[:, None])[:, 0]
    gate = GATES[name](p, probs)
    analytic = gate[:, None] * (probs - torch.nn.functional.one_hot(y, V))
    torch.testing.assert_close(z.grad, analytic, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(stats["gate"].double(), gate, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ALL)
def test_reported_gate_is_the_target_logit_gradient(name):
    """stats['gate'] = s with dL/dz_y = -s (1 - p), for gate and distribution objectives alike."""
    z, y = random_case(seed=4, scale=1.0)
    z.requires_grad_(True)
    loss, stats = deft.token_loss(z, y, name, reduction="sum", return_stats=True, **extras(z))
    loss.backward()
    g_y = z.grad.gather(-1, y[:, None])[:, 0]
    p = stats["p"].double()
    torch.testing.assert_close(stats["gate"].double(), -g_y / (1 - p), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- robustness
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_labels_ignored_gives_zero_loss_and_zero_gradient(name, reduction):
    z = torch.randn(2, 5, V, requires_grad=True)
    y = torch.full((2, 5), -100)
    kw = {"ref_logits": z.detach(), "teacher_logits": z.detach(), "old_logprobs": torch.zeros(2, 5)}
    loss = deft.token_loss(z, y, name, reduction=reduction, **kw)
    loss.sum().backward()
    assert torch.all(loss == 0)
    assert torch.all(z.grad == 0)


@pytest.mark.parametrize("name", ALL)
def test_extreme_logits_stay_finite(name):
    z = torch.zeros(4, V)
    z[0, 1] = 75.0  # target p ~ 1e-33
    z[1, 0] = 75.0  # target p ~ 1
    z[2] = torch.linspace(-1e4, 1e4, V)
    z[3] = torch.linspace(1e4, -1e4, V)
    y = torch.tensor([0, 0, 0, 0])
    z.requires_grad_(True)
    kw = {"ref_logits": z.detach().flip(-1), "teacher_logits": z.detach().flip(-1), "old_logprobs": torch.zeros(4)}
    loss, stats = deft.token_loss(z, y, name, reduction="none", return_stats=True, **kw)
    loss.sum().backward()
    assert torch.isfinite(loss).all(), loss
    assert torch.isfinite(z.grad).all()
    for key in ("p", "gate", "entropy"):
        assert torch.isfinite(stats[key]).all(), key


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_match_fp32(name, dtype):
    """Losses are computed in fp32 from half-precision logits: the only difference to fp32 logits
    is the rounding of the logits themselves (relative 2^-8 for bf16, 2^-11 for fp16)."""
    z, y = random_case(n=16, seed=9, scale=2.0)
    z = z.float()
    kw = extras(z)
    kw["ref_logits"] = kw["teacher_logits"] = kw["ref_logits"].float()
    kw["old_logprobs"] = kw["old_logprobs"].float()
    zh = z.to(dtype).requires_grad_(True)
    zf = zh.detach().float().requires_grad_(True)  # same rounded values in fp32
    lh = deft.token_loss(zh, y, name, **kw)
    lf = deft.token_loss(zf, y, name, **kw)
    assert lh.dtype == torch.float32
    lh.backward()
    lf.backward()
    torch.testing.assert_close(lh, lf, rtol=1e-6, atol=1e-6)
    tol = {torch.bfloat16: 8e-3, torch.float16: 1e-3}[dtype]
    torch.testing.assert_close(zh.grad.float(), zf.grad, rtol=tol, atol=tol * 0.1)
    full = deft.token_loss(z, y, name, **kw)  # unrounded fp32 logits
    torch.testing.assert_close(lh, full, rtol=2e-2 if dtype == torch.bfloat16 else 3e-3, atol=1e-3)
