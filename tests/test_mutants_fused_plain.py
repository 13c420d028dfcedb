"""The fused engine's plain and target-only paths at their borders.

Written to kill mutants of src/deft/fused/plain.py and src/deft/fused/target.py that survived
``make mutate`` (docs/testing.md). Expected values come from the unfused reference
(``deft.token_loss`` on full logits), numpy anchors or hand computations.
"""

import math

import numpy as np
import pytest
import torch

import deft
from anchor_numpy import T, Y, Z, log_softmax, pick, softmax

EYE = np.eye(5)
W = np.array([2.0, 0.5, 0.0])  # token weights above 1, below 1 and 0


def fused(spec, z=Z, y=Y, teacher=None, **kw):
    """Per-token loss, ``dL/dz`` and statistics of the fused engine (identity LM head: the hidden
    states are the logits; the teacher's logits come through an identity head too)."""
    h = torch.tensor(z, requires_grad=True)
    if teacher is not None:
        kw.update(teacher_hidden=torch.tensor(teacher), teacher_weight=torch.tensor(np.eye(z.shape[1])))
    loss, stats = deft.fused_token_loss(h, torch.tensor(np.eye(z.shape[1])), torch.tensor(y), spec, reduction="none",
                                        return_stats=True, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), h.grad.numpy(), stats


def plain(spec, z=Z, y=Y, teacher=None, **kw):
    """The same from the plain engine on the logits ``z``."""
    zt = torch.tensor(z, requires_grad=True)
    if teacher is not None:
        kw.update(teacher_logits=torch.tensor(teacher))
    loss, stats = deft.token_loss(zt, torch.tensor(y), spec, reduction="none", return_stats=True, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), zt.grad.numpy(), stats


def ce(q_logits, z):
    """``CE(softmax(q) ‖ softmax(z)) = -Σ_v Q_v log P_v`` per row."""
    return -(softmax(q_logits) * log_softmax(z)).sum(-1)


# ---------------------------------------------------------------- token weights (plain, target)
@pytest.mark.parametrize("engine", [fused, plain])
@pytest.mark.parametrize("spec", ["nll", "p", "kd"])
def test_token_weights_scale_the_reported_gate(engine, spec):
    """The weighted loss is ``w L``, so ``dL/dz_y = -w s (1 - p)``: the reported gate is ``w s``
    (nll: s = 1; ``p`` (L = -p): s = p; KD, a distribution objective: s = -g_y / (1 - p) with
    ``g = P - softmax(T)``)."""
    p = pick(softmax(Z))
    gate = {"nll": np.ones(3), "p": p, "kd": (pick(softmax(T)) - p) / (1 - p)}[spec]
    teacher = T if spec == "kd" else None
    _, _, stats = engine(spec, teacher=teacher, token_weights=torch.tensor(W))
    np.testing.assert_allclose(stats["gate"].numpy(), W * gate, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("engine", [fused, plain])
def test_autograd_objective_statistics_with_token_weights(registered, engine):
    """An ``"autograd"`` objective's statistics come from its own gradient: ``-log p`` written as
    one has ``g = P - δ_y``, so the gate ``-g_y / (1 - p)`` is 1, times the token weight."""
    from deft.objectives import Terms

    name = registered("test_autograd_nll", "autograd", lambda d: Terms(-d.logp))
    loss, grad, stats = engine(name, token_weights=torch.tensor(W))
    np.testing.assert_allclose(loss, -W * pick(log_softmax(Z)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, W[:, None] * (softmax(Z) - EYE[Y]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats["p"].numpy(), pick(softmax(Z)), rtol=1e-5)
    np.testing.assert_allclose(stats["gate"].numpy(), W, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("engine", [fused, plain])
def test_distribution_objective_token_weights_multiply_loss_and_gradient(engine):
    """KD ``L = CE(T ‖ P)`` with token weights: ``w L`` and ``w (P - softmax(T))``."""
    loss, grad, _ = engine("kd", teacher=T, token_weights=torch.tensor(W))
    np.testing.assert_allclose(loss, W * ce(T, Z), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, W[:, None] * (softmax(Z) - softmax(T)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("engine", [fused, plain])
def test_uniform_target_with_token_weights(registered, engine):
    """Label smoothing ``L = -0.9 log p - 0.1 mean_v log P_v`` with token weights:
    ``w L`` and ``g = w [(0.9 + 0.1) P - 0.9 δ_y - 0.1 / V]``."""
    from deft.objectives import Target

    name = registered("test_smoothing", "distribution", lambda d: Target(label=0.9, uniform=0.1))
    logP = log_softmax(Z)
    loss, grad, _ = engine(name, token_weights=torch.tensor(W))
    np.testing.assert_allclose(loss, W * (-0.9 * pick(logP) - 0.1 * logP.mean(-1)), rtol=1e-5, atol=1e-7)
    g = softmax(Z) - 0.9 * EYE[Y] - 0.1 / 5
    np.testing.assert_allclose(grad, W[:, None] * g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("engine", [fused, plain])
def test_a_target_of_half_a_distribution_with_token_weights(registered, engine):
    """A target that is not a distribution, ``Q = ½ softmax(T)`` (mass ½): ``L = -Σ_v Q_v log P_v``
    and ``g = (Σ_v Q_v) P - Q = ½ (P - softmax(T))``, times the token weights."""
    from deft.objectives import Target

    half = torch.log_softmax(torch.tensor(T), -1) + math.log(0.5)
    name = registered("test_half_target", "distribution", lambda d: Target(label=0.0, dists=((1.0, half.clone()),)))
    loss, grad, _ = engine(name, token_weights=torch.tensor(W))
    np.testing.assert_allclose(loss, W * 0.5 * ce(T, Z), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, W[:, None] * 0.5 * (softmax(Z) - softmax(T)), rtol=1e-5, atol=1e-7)


def test_distribution_objective_statistics_stay_finite_for_a_certain_token(registered):
    """A label whose probability rounds to 1 (logit 50 above the others): ``g_y`` and ``1 - p`` are
    both 0, and the reported gate ``-g_y / (1 - p)`` must not become NaN; the others are 1
    (``-log p`` as a distribution target: ``g_y = p - 1``)."""
    from deft.objectives import Target

    name = registered("test_label_target", "distribution", lambda d: Target(label=1.0))
    z = Z.copy()
    z[1, Y[1]] = 50.0
    loss, _, stats = fused(name, z=z)
    assert stats["p"][1] == 1.0 and loss[1] == 0.0
    assert torch.isfinite(stats["gate"]).all()
    np.testing.assert_allclose(stats["gate"].numpy()[[0, 2]], 1.0, rtol=1e-5)


# ------------------------------------------------------------------------- needs (plain engine)
def test_a_gate_objective_with_a_frozen_model_need_still_reads_its_other_inputs(registered):
    """A gate objective skips a frozen model's distribution (it sees log p only) but still gets
    every other input it needs, whatever their order: here a per-token batch input sorted after
    the model need, ``L = -s log p``."""
    from deft.objectives.base import PerTokenLoss
    from deft.objectives.needs import NEEDS, Need, register_need

    register_need(Need("test_scale", "a per-token scale", "batch", "test_scale"))
    try:
        name = registered("test_scaled_nll", "gate", lambda t: PerTokenLoss(-t.logp * t.test_scale),
                          needs=("ref", "test_scale"))
        scale = np.array([1.5, 0.25, 3.0])
        loss = deft.token_loss(torch.tensor(Z), torch.tensor(Y), name, reduction="none", ref_logits=torch.tensor(T),
                               inputs={"test_scale": torch.tensor(scale)})
        np.testing.assert_allclose(loss.numpy(), -scale * pick(log_softmax(Z)), rtol=1e-6)
    finally:
        NEEDS.pop("test_scale")
