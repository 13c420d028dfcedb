"""Probability masks: the reference aliases ``Only*-τ`` divide by the selected tokens, the native
``obj[p>=τ]`` by every loss token."""

import math

import pytest
import torch

import deft
from deft.objectives import parse_objective

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

    assert describe_mask(parse_objective("OnlyTopP-0.1")).endswith("divides by the selected tokens (reference semantics)")
    assert describe_mask(parse_objective("p[p>=0.1]")).endswith("divides by all loss tokens")
    assert describe_mask(parse_objective("deft")) == ""
    assert "OnlyTopLogP" in MASKS_HELP and "selected tokens" in MASKS_HELP
