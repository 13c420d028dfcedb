"""Objective library: closed forms, gradients against textbook autograd and the analytic gate,
limits, robustness, spec parsing."""

import math

import pytest
import torch

import deft
from deft.objectives import REGISTRY, cayley_focus, parse_objective

from reference_formulas import FORMULAS, GATES

ALL = list(REGISTRY)
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


def test_every_objective_is_listed_with_a_description():
    listed = deft.list_objectives()
    expected = {"nll", "p", "dft", "power", "cayley", "cayley_floor", "deft", "eaft", "profit", "psft",
                "label_smoothing", "sft_kl", "asft", "gem", "kd", "kd_hybrid", "target_sft"}
    assert set(listed) == expected
    assert all(isinstance(v, str) and len(v) > 10 for v in listed.values())


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


@pytest.mark.parametrize("name", ["nll", "p", "dft", "power", "cayley", "deft", "eaft", "label_smoothing", "gem"])
def test_near_one_hot_logits_give_near_zero_loss(name):
    z = torch.zeros(2, V)
    z[0, 3] = z[1, 5] = 40.0
    loss = deft.token_loss(z, torch.tensor([3, 5]), name, reduction="none")
    if name == "label_smoothing":  # the smoothing term keeps lam * 40 (V-1)/V: log P = -40 off the label
        torch.testing.assert_close(loss, torch.full((2,), 0.1 * 40 * (V - 1) / V))
    else:
        assert torch.all(loss.abs() < 1e-6)


def test_profit_directions_and_threshold():
    z = torch.zeros(2, V)
    z[0, 0] = 10.0  # p ~ 1 on token 0
    y = torch.tensor([0, 1])  # second row p = 1/V
    hi = deft.token_loss(z, y, "profit:tau=0.1", reduction="none")
    lo = deft.token_loss(z, y, "profit:tau=0.1,direction=lower", reduction="none")
    assert hi[1] == 0 and hi[0] > 0 and lo[0] == 0
    torch.testing.assert_close(lo[1], torch.tensor(-torch.log_softmax(z[1], -1)[1].item()))


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


# ---------------------------------------------------------------- specs
@pytest.mark.parametrize("spec,name,values,mask", [
    ("deft", "deft", (), None),
    ("DEFT", "deft", (), None),
    ("original", "nll", (), None),
    ("logp", "nll", (), None),
    ("p", "p", (), None),
    ("Cayley_Trans", "cayley_floor", (), None),
    ("GeneralFamily-0.3", "power", (("alpha", 0.3),), None),
    ("power:alpha=0.25", "power", (("alpha", 0.25),), None),
    ("eaft:k=10,gamma=2", "eaft", (("k", 10), ("gamma", 2.0)), None),
    ("profit:tau=0.2,direction=lower", "profit", (("tau", 0.2), ("direction", "lower")), None),
    ("psft:eps_low=0.1,eps_high=0.3", "psft", (("eps_low", 0.1), ("eps_high", 0.3)), None),
    ("OnlyTopP-0.1", "p", (), ("top", 0.1)),
    ("OnlyBottomP-0.2", "p", (), ("bottom", 0.2)),
    ("OnlyTopLogP-0.05", "nll", (), ("top", 0.05)),
    ("OnlyBottomLogP-0.5", "nll", (), ("bottom", 0.5)),
    ("deft[p>=0.1]", "deft", (), ("top", 0.1)),
    ("power:alpha=1 [p<=0.9]", "power", (("alpha", 1.0),), ("bottom", 0.9)),
])
def test_spec_parsing(spec, name, values, mask):
    obj = parse_objective(spec)
    assert obj.name == name and obj.mask == mask
    for key, value in values:
        assert obj.kwargs[key] == value
    assert parse_objective(obj.spec) == obj  # the canonical spec round-trips


def test_default_parameter_values():
    expect = {"power": {"alpha": 0.5}, "eaft": {"k": 20, "gamma": 1.0},
              "profit": {"tau": 0.1, "direction": "higher"}, "psft": {"eps_low": 0.2, "eps_high": 0.28},
              "label_smoothing": {"lam": 0.1}, "sft_kl": {"lam": 0.1}, "asft": {"lam": 0.1},
              "gem": {"beta": 0.7}, "kd_hybrid": {"lam": 0.5}, "target_sft": {"eta": 0.5}}
    for name, values in expect.items():
        assert parse_objective(name).kwargs == values


@pytest.mark.parametrize("spec,match", [
    ("bogus", "valid objectives: nll, p, dft"),
    ("power:beta=1", "valid parameters: alpha"),
    ("power:alpha=-1", "must be >= 0"),
    ("power:alpha=abc", "must be float"),
    ("eaft:k=1", "must be >= 2"),
    ("eaft:k=2.5", "must be int"),
    ("profit:direction=up", "must be one of higher, lower"),
    ("gem:beta=0", "must be > 0"),
    ("kd[p>=0.1]", "only wraps gate objectives"),
    ("nll[p>=2]", "in \\[0, 1\\]"),
    ("power:alpha", "expected key=value"),
    ("", "non-empty"),
])
def test_bad_specs_raise_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_objective(spec)


def test_probability_mask_matches_reference_semantics():
    z, y = random_case(seed=12)
    p = torch.softmax(z, -1).gather(-1, y[:, None])[:, 0]
    top = deft.token_loss(z, y, "OnlyTopP-0.2", reduction="none")
    torch.testing.assert_close(top.double(), torch.where(p >= 0.2, 1 - p, 0.0), rtol=1e-6, atol=1e-7)
    bottom = deft.token_loss(z, y, "OnlyBottomLogP-0.2", reduction="none")
    torch.testing.assert_close(bottom.double(), torch.where(p <= 0.2, -p.log(), 0.0), rtol=1e-6, atol=1e-6)


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
