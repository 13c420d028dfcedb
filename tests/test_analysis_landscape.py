"""Tests of deft.analysis.landscape: the gradient landscape (paper Figure 2): real tokens placed by
target probability ``p`` (x, log) and entropy (y), coloured by the normalised gradient magnitude
each objective gives them."""

import pytest
import torch

from deft.analysis.landscape import gate_depends_on_p_only, landscape

from plot_helpers import _stats


def test_landscape_gates():
    st = _stats(3)
    p = st["p"].double()
    for spec in ("nll", "p", "dft", "cayley", "power:alpha=0.3"):
        assert gate_depends_on_p_only(spec), spec
    for spec in ("deft", "eaft", "label_smoothing"):
        assert not gate_depends_on_p_only(spec), spec
    panels, skipped = landscape(st, ["nll", "p", "deft", "eaft", "label_smoothing"])
    torch.testing.assert_close(panels["nll"]["signal"], 1 - p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(panels["p"]["signal"], p * (1 - p), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(panels["deft"]["signal"], st["gate/deft"].double() * (1 - p))
    assert "eaft:k=20,gamma=1.0" in panels
    for panel in panels.values():
        assert float(panel["normalised"].max()) == pytest.approx(1.0)
        assert float(panel["normalised"].min()) >= 0.0
    assert list(skipped) == ["label_smoothing:lam=0.1"]
