"""Tests of deft.objectives.deformed_log: the deformed-log family ``L_a(p) = (1 - p^a)/a`` and its
members (paper Sections 3-5)."""

import torch

import deft
from deft.objectives import cayley_focus

from objectives_helpers import V, random_case


# ---------------------------------------------------------------- limits
def test_power_tends_to_nll_as_alpha_goes_to_zero():
    z, y = random_case(seed=5)
    nll = deft.token_loss(z, y, "nll", reduction="none")
    torch.testing.assert_close(deft.token_loss(z, y, "power:alpha=0", reduction="none"), nll)
    close = deft.token_loss(z, y, "power:alpha=1e-6", reduction="none")
    torch.testing.assert_close(close, nll, rtol=1e-4, atol=1e-5)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    deft.token_loss(z1, y, "power:alpha=1e-6").backward()
    deft.token_loss(z2, y, "nll").backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-4, atol=1e-7)


def test_p_and_dft_have_identical_gradients_but_different_values():
    z, y = random_case(seed=6)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    l1 = deft.token_loss(z1, y, "p")
    l2 = deft.token_loss(z2, y, "dft")
    (l1 + 0).backward()
    l2.backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    assert not torch.allclose(l1, l2)


def test_deft_focus_lies_between_one_over_v_and_one():
    z, y = random_case(n=64, seed=7, scale=6.0)
    z[0] = 0.0  # uniform row: focus exactly 1/V
    z[1, 0] = 80.0  # one-hot row: focus ~ 1
    _, stats = deft.token_loss(z, y, "deft", reduction="none", return_stats=True)
    focus = stats["focus"]
    assert torch.all(focus >= 1 / V - 1e-7) and torch.all(focus <= 1 + 1e-7)
    torch.testing.assert_close(focus[0], torch.tensor(1 / V))
    torch.testing.assert_close(focus[1], torch.tensor(1.0))


def test_cayley_focus_matches_eq17_and_eq19():
    p = torch.tensor([1e-30, 1e-8, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-6], dtype=torch.float64)
    a = cayley_focus(p.log())
    eq17 = (1 - torch.sqrt(1 - p)) / (1 + torch.sqrt(1 - p))
    eq19 = torch.tanh(-torch.log1p(-p) / 4)
    torch.testing.assert_close(a, eq19, rtol=1e-9, atol=0)
    torch.testing.assert_close(a[2:], eq17[2:], rtol=1e-9, atol=0)  # Eq. 17 as written cancels for tiny p
    assert torch.all(a[1:] > 0) and a[0] >= 0 and torch.all(a <= 1)


def test_cayley_floor_uses_the_batch_mean():
    z, y = random_case(seed=8)
    _, stats = deft.token_loss(z, y, "Cayley_Trans", reduction="none", return_stats=True)
    p = stats["p"].double()
    f = 0.5 * p.mean()
    torch.testing.assert_close(stats["focus"].double(), (f + (1 - f) * p / (2 - p)).clamp(0.001, 1),
                               rtol=1e-6, atol=1e-7)
