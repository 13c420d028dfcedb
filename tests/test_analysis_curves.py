"""Tests of deft.analysis.curves: the theory curves gate ``s(p)`` and signal ``W(p) = s(p)(1 - p)``
(paper Eq. 7), from synthetic rows whose target probability is ``p``, against closed forms."""

import pytest
import torch

from deft.analysis.curves import all_curves, gate_curves, synthetic_logits

P = torch.tensor([1e-3, 0.1, 0.5, 0.9])


@pytest.mark.parametrize("shape", ["flat", "peaked"])
def test_synthetic_rows_put_p_on_token_0_and_the_rest_by_shape(shape):
    probs = torch.softmax(synthetic_logits(P, 6, shape).double(), -1)
    torch.testing.assert_close(probs[:, 0], P.double(), rtol=1e-5, atol=1e-7)
    rest = 1 - P.double()
    if shape == "flat":
        torch.testing.assert_close(probs[:, 1:], (rest / 5).unsqueeze(-1).expand(-1, 5), rtol=1e-5, atol=1e-7)
    else:
        torch.testing.assert_close(probs[:, 1], rest, rtol=1e-5, atol=1e-7)
        assert probs[:, 2:].max() < 1e-20
    with pytest.raises(ValueError, match="shape must be one of flat, peaked"):
        synthetic_logits(P, 6, "round")


def test_gates_and_signals_match_the_closed_forms():
    curves = gate_curves(["nll", "p", "power:alpha=0.5"], p=P, vocab_size=8)
    assert list(curves) == ["nll", "p", "power:alpha=0.5"]
    expect = {"nll": torch.ones(4, dtype=torch.float64), "p": P.double(), "power:alpha=0.5": P.double() ** 0.5}
    for spec, gate in expect.items():
        torch.testing.assert_close(curves[spec]["p"], P.double(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(curves[spec]["gate"], gate, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(curves[spec]["signal"], gate * (1 - P.double()), rtol=1e-5, atol=1e-6)


def test_deft_gate_depends_on_the_shape_and_nll_only_has_the_flat_curve():
    curves = all_curves(["nll", "deft"], vocab_size=64)
    assert set(curves) == {("nll", "flat"), ("deft", "flat"), ("deft", "peaked")}
    # at the same p, putting the rest on one token raises the focus sum_v P_v^2, so the deft gate differs
    flat, peaked = curves[("deft", "flat")], curves[("deft", "peaked")]
    mid = (flat["p"] > 0.2) & (flat["p"] < 0.8)
    assert not torch.allclose(flat["gate"][mid], peaked["gate"][mid], atol=1e-3)
