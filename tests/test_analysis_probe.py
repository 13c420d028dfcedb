"""Tests of deft.analysis.probe: ``deft probe``: which regime is my model in on this data? One forward
pass, no training."""

import math

import pytest
import torch

from deft.analysis.probe import (CONFLICT_ENTROPY, CONFLICT_P, HIST_EDGES, STRONG_FOCUS, WEAK_FOCUS, regime_of,
                                 summarize_token_stats)


def test_regime_thresholds_at_boundaries():
    assert (STRONG_FOCUS, WEAK_FOCUS) == (0.45, 0.2)
    assert regime_of(0.65) == "strong" and regime_of(0.05) == "weak"  # the paper's Figure 5 anchors
    assert regime_of(0.45) == "strong"
    assert regime_of(math.nextafter(0.45, 0)) == "intermediate"
    assert regime_of(0.2) == "intermediate"
    assert regime_of(math.nextafter(0.2, 0)) == "weak"
    assert regime_of(1.0) == "strong" and regime_of(0.0) == "weak"
    # mean p lowers the verdict one level when it is under half the mean focus
    assert regime_of(0.65, 0.325) == "strong"
    assert regime_of(0.65, 0.3249) == "intermediate"
    assert regime_of(0.3, 0.15) == "intermediate"
    assert regime_of(0.3, 0.1) == "weak"
    assert regime_of(0.1, 0.0) == "weak"
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            regime_of(bad)
    with pytest.raises(ValueError):
        regime_of(0.5, 2.0)


def test_summary_on_hand_made_tokens():
    p = torch.tensor([0.01, 0.05, 0.5, 0.95, 1e-7, 0.6])
    entropy = torch.tensor([0.5, 2.0, 0.1, 0.3, 0.2, 0.9])
    focus = torch.tensor([0.8, 0.1, 0.5, 0.85, 0.9, 0.4])
    s = summarize_token_stats({"p": p, "entropy": entropy, "focus": focus})
    assert s["tokens"] == 6
    assert s["mean_p"] == pytest.approx(float(p.double().mean()))
    assert s["mean_focus"] == pytest.approx(float(focus.double().mean()))
    # conflicts: p < 0.1 and entropy < 1 nat -> tokens 0 (0.01, 0.5) and 4 (1e-7, 0.2)
    assert (CONFLICT_P, CONFLICT_ENTROPY) == (0.1, 1.0)
    assert s["confident_conflicts"]["count"] == 2 and s["confident_conflicts"]["share"] == pytest.approx(2 / 6)
    m = s["mean_p"]
    assert s["cayley_focus_of_mean_p"] == pytest.approx((1 - math.sqrt(1 - m)) / (1 + math.sqrt(1 - m)))
    assert s["histogram"]["edges"] == list(HIST_EDGES) and sum(s["histogram"]["counts"]) == 6
    assert s["histogram"]["counts"][0] == 1  # 1e-7 in [0, 1e-6)
    assert s["histogram"]["counts"][-1] == 1  # 0.95 in [0.9, 1]
    assert s["regime"] == "strong" and s["regime_by_focus"] == "strong"  # mean focus 0.59, mean p 0.34
    assert s["recommendation"]["objectives"][0] == "deft"
    assert any("confident conflicts" in note for note in s["recommendation"]["notes"])
