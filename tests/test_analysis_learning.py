"""Tests of deft.analysis.learning: token learning and forgetting between two checkpoints (paper Figure
1)."""

import math

import pytest
import torch

from deft.analysis.learning import learning_shares, token_changes

from plot_helpers import _stats


def test_learning_shares_hand_made():
    before = torch.tensor([0.1, 0.2, 0.6, 0.9, 0.3, 0.7, 0.005, 0.5])
    after = torch.tensor([0.5, 0.205, 0.4, 0.95, 0.1, 0.7, 0.001, 0.52])
    s = learning_shares(before, after, threshold=0.01)
    # learned: 0 (low), 3 (high), 7 (high: 0.5 >= 0.5); forgotten: 2 (high), 4 (low); unchanged: 1, 5, 6
    assert s["tokens"] == 8
    assert s["learned"] == pytest.approx(3 / 8) and s["forgotten"] == pytest.approx(2 / 8)
    assert s["unchanged"] == pytest.approx(3 / 8)
    assert s["learned_high"] == pytest.approx(2 / 8) and s["learned_low"] == pytest.approx(1 / 8)
    assert s["forgotten_high"] == pytest.approx(1 / 8) and s["forgotten_low"] == pytest.approx(1 / 8)
    assert learning_shares(before, after, threshold=0.0)["learned"] == pytest.approx(4 / 8)
    with pytest.raises(ValueError):
        learning_shares(before, after[:3])


def test_token_changes_and_mismatch():
    a, b = _stats(0), _stats(0, shift=1.0)
    ch = token_changes(a, b)
    torch.testing.assert_close(ch["dp"], (b["p"] - a["p"]).double())
    torch.testing.assert_close(ch["dloss"], (a["logp"] - b["logp"]).double())
    assert bool(((ch["dp"] > 0) <= (ch["dloss"] <= 0)).all())  # p up <=> loss down
    with pytest.raises(ValueError, match="token_id"):
        token_changes(a, {**b, "token_id": b["token_id"].roll(1)})
    with pytest.raises(ValueError, match="has 299"):
        token_changes(a, {k: (v[:299] if isinstance(v, torch.Tensor) else v) for k, v in b.items()})


def test_class_metrics_split_content_and_end_tokens_by_hand():
    from deft.analysis.learning import class_metrics

    p = torch.tensor([0.5, 0.25, 0.9, 0.8], dtype=torch.float64)
    base = torch.tensor([0.2, 0.3, 0.1, 0.8], dtype=torch.float64)
    is_end = torch.tensor([False, False, True, False])
    m = class_metrics(p.log(), is_end, base.log(), threshold=0.01)
    assert m["content_tokens"] == 3 and m["end_tokens"] == 1
    assert m["content_mean_p"] == pytest.approx((0.5 + 0.25 + 0.8) / 3)
    assert m["content_nll"] == pytest.approx(-(math.log(0.5) + math.log(0.25) + math.log(0.8)) / 3)
    assert m["end_mean_p"] == pytest.approx(0.9) and m["end_nll"] == pytest.approx(-math.log(0.9))
    # content: token 0 learned (+0.3), token 1 forgotten (-0.05), token 3 unchanged; the end token's
    # +0.8 is not counted
    assert m["content_learned"] == pytest.approx(1 / 3) and m["content_forgotten"] == pytest.approx(1 / 3)
    assert list(m)[:3] == ["content_nll", "content_mean_p", "content_tokens"]
    assert "content_learned" not in class_metrics(p.log(), is_end)


def test_class_metrics_of_an_empty_class_are_none_and_shapes_must_match():
    from deft.analysis.learning import class_metrics

    logp = torch.tensor([-1.0, -2.0])
    m = class_metrics(logp, torch.tensor([True, True]), logp)
    assert m["content_tokens"] == 0 and m["content_nll"] is None and m["content_mean_p"] is None
    assert m["content_learned"] is None and m["end_nll"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="one shape"):
        class_metrics(logp, torch.tensor([True]))
