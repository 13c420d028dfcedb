"""Tests of deft.objectives.registry: the objective registry and the spec-string parser."""

import math

import pytest
import torch

import deft
from deft.objectives import parse_objective

from objectives_helpers import random_case


def test_every_objective_is_listed_with_a_description():
    listed = deft.list_objectives()
    expected = {"nll", "p", "dft", "power", "cayley", "cayley_floor", "deft", "eaft", "profit", "psft",
                "label_smoothing", "sft_kl", "asft", "gem", "kd", "kd_hybrid", "target_sft"}
    assert set(listed) == expected
    assert all(isinstance(v, str) and len(v) > 10 for v in listed.values())


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


PROBS = [0.5, 0.05, 0.2, 0.9]  # target probabilities of four loss tokens (a fifth is ignored)


def hand_case(vocab=4):
    """Logits whose label probabilities are exactly ``PROBS`` (rest spread evenly); the last
    row's label is ignored. Also hidden states / weight giving the same logits (identity head)."""
    rows = []
    for p in PROBS + [0.3]:
        rows.append([math.log(p)] + [math.log((1 - p) / (vocab - 1))] * (vocab - 1))
    logits = torch.tensor(rows, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 0, -100])
    return logits, labels


@pytest.mark.parametrize("engine", ["plain", "fused"])
def test_reference_aliases_average_over_selected_tokens(engine):
    logits, labels = hand_case()
    cases = {  # spec -> (hand-computed mean, denominator)
        "OnlyTopP-0.1": (((1 - 0.5) + (1 - 0.2) + (1 - 0.9)) / 3, 3),
        "p[p>=0.1]": (((1 - 0.5) + (1 - 0.2) + (1 - 0.9)) / 4, 4),
        "OnlyBottomP-0.25": (((1 - 0.05) + (1 - 0.2)) / 2, 2),
        "p[p<=0.25]": (((1 - 0.05) + (1 - 0.2)) / 4, 4),
        "OnlyTopLogP-0.4": ((-math.log(0.5) - math.log(0.9)) / 2, 2),
        "OnlyBottomLogP-0.06": (-math.log(0.05), 1),
        "nll[p>=0.4]": ((-math.log(0.5) - math.log(0.9)) / 4, 4),
    }
    for spec, (expected, count) in cases.items():
        if engine == "plain":
            loss, stats = deft.token_loss(logits, labels, spec, reduction="mean", return_stats=True)
        else:
            loss, stats = deft.fused_token_loss(logits, torch.eye(4, dtype=torch.float64), labels, spec,
                                                reduction="mean", chunk_size=1, return_stats=True)
        assert loss.item() == pytest.approx(expected, rel=1e-6), spec
        assert stats["num_tokens"] == count, spec
        assert int(stats["mask"].sum()) == 4  # every loss token still has its statistics


def test_selected_mean_gradient_and_sum_agree_between_engines():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(29, 6, generator=g)
    w = torch.randn(11, 6, generator=g)
    y = torch.randint(0, 11, (29,), generator=g)
    y[::5] = -100
    for spec in ("OnlyTopP-0.1", "OnlyBottomLogP-0.3"):
        hp, wp = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        plain, ps = deft.token_loss(hp @ wp.T, y, spec, reduction="mean", return_stats=True)
        plain.backward()
        hf, wf = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        fused, fs = deft.fused_token_loss(hf, wf, y, spec, reduction="mean", chunk_size=4, return_stats=True)
        fused.backward()
        p = torch.softmax(h @ w.T, -1)[y != -100].gather(-1, y[y != -100, None])[:, 0]
        selected = int(parse_objective(spec).selected(p).sum())
        assert 0 < selected < 23 and ps["num_tokens"] == fs["num_tokens"] == selected
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(hf.grad, hp.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(wf.grad, wp.grad, rtol=1e-4, atol=1e-6)
        total = deft.fused_token_loss(h, w, y, spec, reduction="sum")
        torch.testing.assert_close(total / selected, fused.detach(), rtol=1e-5, atol=1e-6)


def test_normalizer_round_trips_through_the_spec():
    top = parse_objective("OnlyTopP-0.1")
    assert top.normalizer == "selected" and top.spec == "OnlyTopP-0.1" and parse_objective(top.spec) == top
    native = parse_objective("p[p>=0.1]")
    assert native.normalizer == "tokens" and native.mask == top.mask and native != top
    assert parse_objective("OnlyBottomLogP-0.2").spec == "OnlyBottomLogP-0.2"


def test_no_selected_token_gives_zero_not_nan():
    logits, labels = hand_case()
    loss, stats = deft.token_loss(logits, labels, "OnlyTopP-0.95", return_stats=True)
    assert loss.item() == 0.0 and stats["num_tokens"] == 0


def test_mask_descriptions_name_the_denominator():
    from deft.objectives import MASKS_HELP, describe_mask

    assert describe_mask(parse_objective("OnlyTopP-0.1")).endswith(
        "divides by the selected tokens (reference semantics)")
    assert describe_mask(parse_objective("p[p>=0.1]")).endswith("divides by all loss tokens")
    assert describe_mask(parse_objective("deft")) == ""
    assert "OnlyTopLogP" in MASKS_HELP and "selected tokens" in MASKS_HELP
