"""Tests of deft.analysis.distribution: token-probability distributions on the training set (paper
Figures 3, 4 and 6)."""

import pytest
import torch

from deft.analysis.distribution import log10_p_histogram


def test_log10_histogram_integrates_to_one():
    edges, density = log10_p_histogram(torch.tensor([1e-12, 1e-3, 0.5, 1.0]), bins=16)
    assert edges[0] == -8 and edges[-1] == 0
    assert float((density * (edges[1:] - edges[:-1])).sum()) == pytest.approx(1.0)
    assert density[0] > 0  # p below 1e-8 lands in the first bin
