"""The fused chunked engine against hand computations in numpy float64 (not against the plain engine).

Logits ``z = H W^T`` for a 3-token, 5-word case: with the hand gradient ``G = dL/dz`` (central
differences of the formulas in :mod:`anchor_numpy`), ``dL/dH = G W`` and ``dL/dW = G^T H``. Gate
objectives run with each implementation of the gate step (``impl="eager"``, ``"compile"``).
"""

import numpy as np
import pytest
import torch

import deft
from anchor_numpy import CASES, OLD, T, Y, Z, loss_and_grad, pick, softmax

# W [V=5, H=4] and H [3, 4] chosen so that H W^T = Z exactly (least squares is exact: rank 4 < 5 is
# avoided by solving for H with a W of full column rank and then defining Z from them)
W = np.array([
    [1.0, 0.0, 0.5, 0.0],
    [0.0, 1.0, 0.0, -0.5],
    [0.5, 0.0, 1.0, 0.0],
    [0.0, -1.0, 0.0, 1.0],
    [0.25, 0.25, 0.25, 0.25],
])
HID = np.linalg.lstsq(W, Z.T, rcond=None)[0].T  # [3, 4]
ZW = HID @ W.T  # the logits this case really has (close to, not equal to, Z)
# reference/teacher logits T come from hidden states through the identity head of width 5
EYE = np.eye(5)


# (case, impl): every case eagerly, the gate objectives also compiled
BY_IMPL = [(case, "eager") for case in CASES] + [
    (case, "compile") for case in CASES if deft.parse_objective(case[0]).kind == "gate"]


def fused(spec, chunk_size=None, reduction="none", **kw):
    h = torch.tensor(HID, requires_grad=True)
    w = torch.tensor(W, requires_grad=True)
    loss, stats = deft.fused_token_loss(
        h, w, torch.tensor(Y), spec, reduction=reduction, chunk_size=chunk_size, return_stats=True,
        ref_hidden=torch.tensor(T), ref_weight=torch.tensor(EYE), teacher_hidden=torch.tensor(T),
        teacher_weight=torch.tensor(EYE), old_logprobs=torch.tensor(OLD), **kw)
    loss.sum().backward()
    return loss.detach().double().numpy(), h.grad.double().numpy(), w.grad.double().numpy(), stats


@pytest.mark.parametrize("chunk_size", [1, 2, None])
@pytest.mark.parametrize("case,impl", BY_IMPL, ids=[f"{c[0]}-{impl}" for c, impl in BY_IMPL])
def test_fused_loss_and_gradients_equal_the_hand_computation(case, impl, chunk_size):
    spec, name, params = case
    want_loss, g = loss_and_grad(name, z=ZW, **params)
    loss, grad_h, grad_w, stats = fused(spec, chunk_size, impl=impl)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad_h, g @ W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad_w, g.T @ HID, rtol=1e-4, atol=1e-6)
    p = pick(softmax(ZW))
    np.testing.assert_allclose(stats["p"].double().numpy(), p, rtol=1e-6)
    np.testing.assert_allclose(stats["gate"].double().numpy(), -pick(g) / (1.0 - p), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("impl", ["eager", "compile"])
def test_fused_deft_numbers_written_out(impl):
    """Eq. 20 by hand for every token: a = Σ_v P_v², L = (1 - p^a)/a, dL/dz = p^a (P - δ_y)."""
    e = np.exp(ZW - ZW.max(-1, keepdims=True))
    P = e / e.sum(-1, keepdims=True)
    a = (P * P).sum(-1)
    p = P[np.arange(3), Y]
    G = (p ** a)[:, None] * (P - np.eye(5)[Y])
    loss, grad_h, grad_w, stats = fused("deft", chunk_size=2, reduction="sum", impl=impl)
    assert float(loss) == pytest.approx(((1 - p ** a) / a).sum(), rel=1e-6)
    np.testing.assert_allclose(grad_h, G @ W, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(grad_w, G.T @ HID, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(stats["focus"].double().numpy(), a, rtol=1e-6)
    assert stats["num_tokens"] == 3


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_fused_reductions_and_ignored_labels(reduction):
    labels = torch.tensor([Y[0], -100, Y[2]])
    h = torch.tensor(HID, requires_grad=True)
    w = torch.tensor(W, requires_grad=True)
    loss = deft.fused_token_loss(h, w, labels, "deft", reduction=reduction, chunk_size=1)
    loss.backward()
    want, g = loss_and_grad("deft", z=ZW)
    keep = np.array([1.0, 0.0, 1.0])
    scale = 1.0 if reduction == "sum" else 0.5
    assert float(loss) == pytest.approx(scale * (want * keep).sum(), rel=1e-6)
    # the ignored row's gradient is zero; the others are unchanged (DEFT's a is per token)
    g = g * keep[:, None] * scale
    np.testing.assert_allclose(h.grad.numpy(), g @ W, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(w.grad.numpy(), g.T @ HID, rtol=1e-4, atol=1e-7)


def test_fused_bias_shifts_the_logits():
    b = np.array([0.5, -0.5, 0.0, 1.0, -1.0])
    h = torch.tensor(HID, requires_grad=True)
    w = torch.tensor(W, requires_grad=True)
    bias = torch.tensor(b, requires_grad=True)
    loss = deft.fused_token_loss(h, w, torch.tensor(Y), "deft", bias=bias, reduction="sum")
    loss.backward()
    want, g = loss_and_grad("deft", z=ZW + b)
    assert float(loss) == pytest.approx(want.sum(), rel=1e-6)
    np.testing.assert_allclose(bias.grad.numpy(), g.sum(0), rtol=1e-4, atol=1e-7)
