"""Tests of deft.analysis.learning: token learning and forgetting between two checkpoints (paper Figure
1)."""

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
