"""Every objective on a 3-token, 5-word case against hand computations in numpy float64.

The loss values come from the formulas written out in :mod:`anchor_numpy`, the gradients from
central finite differences of those formulas (stop-gradient parts frozen), so neither the
library's closed-form gates nor torch's autograd is trusted. The statistics (``p``, ``gate``,
``focus``, ``entropy``) are checked against the same arrays.
"""

import numpy as np
import pytest
import torch

import deft
from anchor_numpy import CASES, OLD, T, Y, Z, log_softmax, loss_and_grad, pick, softmax


def extra_inputs():
    t = torch.tensor(T)
    return {"ref_logits": t, "teacher_logits": t.clone(), "old_logprobs": torch.tensor(OLD)}


def run(spec, reduction="none", **kw):
    z = torch.tensor(Z, requires_grad=True)
    loss, stats = deft.token_loss(z, torch.tensor(Y), spec, reduction=reduction, return_stats=True,
                                  **extra_inputs(), **kw)
    loss.sum().backward()
    return loss.detach().double().numpy(), z.grad.double().numpy(), stats


@pytest.mark.parametrize("spec,name,params", CASES, ids=[c[0] for c in CASES])
def test_loss_and_gradient_equal_the_hand_computation(spec, name, params):
    want_loss, want_grad = loss_and_grad(name, **params)
    loss, grad, _ = run(spec)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("spec,name,params", CASES, ids=[c[0] for c in CASES])
def test_reported_gate_p_and_entropy(spec, name, params):
    """``gate`` is ``s`` in ``dL/dz_y = -s (1 - p)`` (the target-logit gradient of the hand formula)."""
    _, want_grad = loss_and_grad(name, **params)
    _, _, stats = run(spec)
    p = pick(softmax(Z))
    np.testing.assert_allclose(stats["p"].double().numpy(), p, rtol=1e-6)
    np.testing.assert_allclose(stats["gate"].double().numpy(), -pick(want_grad) / (1.0 - p), rtol=1e-4, atol=1e-6)
    entropy = -(softmax(Z) * log_softmax(Z)).sum(-1)
    np.testing.assert_allclose(stats["entropy"].double().numpy(), entropy, rtol=1e-6)


def test_focus_indices_by_hand():
    P = softmax(Z)
    p = pick(P)
    root = np.sqrt(1.0 - p)
    floor = 0.5 * p.mean()
    expected = {
        "p": np.ones(3),
        "power:alpha=0.25": np.full(3, 0.25),
        "cayley": (1.0 - root) / (1.0 + root),  # Eq. 17
        "cayley_floor": np.clip(floor + (1.0 - floor) * p / (2.0 - p), 0.001, 1.0),
        "deft": (P ** 2).sum(-1),  # Eq. 20
    }
    for spec, focus in expected.items():
        _, _, stats = run(spec)
        np.testing.assert_allclose(stats["focus"].double().numpy(), focus, rtol=1e-6, err_msg=spec)
    for spec in ("nll", "dft", "eaft", "kd"):
        assert "focus" not in run(spec)[2], spec


def test_deft_numbers_written_out():
    """DEFT on token 0 with the arithmetic spelled out (Eq. 20: a = Σ_v P_v², L = (1 - p^a)/a)."""
    e = np.exp(Z[0])
    P = e / e.sum()
    a = float((P * P).sum())
    p = float(P[0])
    loss, grad, stats = run("deft")
    assert loss[0] == pytest.approx((1 - p ** a) / a, rel=1e-6)
    onehot = np.eye(5)[0]
    np.testing.assert_allclose(grad[0], p ** a * (P - onehot), rtol=1e-5)  # gate p^a (Eq. 11-12)
    assert float(stats["focus"][0]) == pytest.approx(a, rel=1e-6)


def test_cayley_floor_uses_the_mean_over_loss_tokens_only():
    """The batch floor averages p over the loss tokens of the call; ignored positions don't count."""
    labels = torch.tensor([Y[0], -100, Y[2]])
    z = torch.tensor(Z, requires_grad=True)
    loss = deft.token_loss(z, labels, "cayley_floor", reduction="none")
    p = pick(softmax(Z))[[0, 2]]
    floor = 0.5 * p.mean()
    a = np.clip(floor + (1.0 - floor) * p / (2.0 - p), 0.001, 1.0)
    np.testing.assert_allclose(loss.detach().numpy()[[0, 2]], (1 - p ** a) / a, rtol=1e-6)
    assert float(loss[1]) == 0.0


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions_over_loss_tokens(reduction):
    labels = torch.tensor([Y[0], Y[1], -100])
    loss = deft.token_loss(torch.tensor(Z), labels, "deft", reduction=reduction)
    want, _ = loss_and_grad("deft")
    total = want[0] + want[1]
    assert float(loss) == pytest.approx(total / 2 if reduction == "mean" else total, rel=1e-6)


@pytest.mark.parametrize("spec,keep", [
    ("nll[p>=0.2]", "top"), ("nll[p<=0.2]", "bottom"), ("p[p>=0.2]", "top"), ("OnlyBottomLogP-0.2", "bottom"),
])
def test_probability_masks(spec, keep):
    p = pick(softmax(Z))
    mask = p >= 0.2 if keep == "top" else p <= 0.2
    assert 0 < mask.sum() < 3  # the case splits the tokens
    base = "p" if spec.startswith("p[") else "nll"
    want_loss, want_grad = loss_and_grad(base)
    loss, grad, _ = run(spec)
    np.testing.assert_allclose(loss, want_loss * mask, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(grad, want_grad * mask[:, None], rtol=1e-4, atol=1e-6)


def test_mask_threshold_is_inclusive():
    p0 = float(run("nll")[2]["p"][0])  # the library's own p, so that tau equals it exactly
    loss, _, _ = run(f"nll[p>={p0!r}]")
    assert loss[0] > 0
    loss, _, _ = run(f"nll[p<={p0!r}]")
    assert loss[0] > 0


def test_token_weights_scale_loss_and_gradient():
    w = np.array([2.0, 0.0, 0.5])
    want_loss, want_grad = loss_and_grad("deft")
    loss, grad, _ = run("deft", token_weights=torch.tensor(w))
    np.testing.assert_allclose(loss, want_loss * w, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(grad, want_grad * w[:, None], rtol=1e-4, atol=1e-6)
