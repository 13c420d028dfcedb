"""Tests of deft.fused.autodiff: ``"autograd"`` objectives on one row sub-block: any loss of the
differentiable ``log P``, differentiated by autograd (slower than the closed forms of the gate and
target paths)."""

import pytest
import torch

from deft.objectives import REGISTRY

from fused_chunked_helpers import assert_sub_blocks_match_plain


@pytest.fixture
def reverse_kl():
    """An ``"autograd"`` objective registered for one test: ``-log p + lam KL(π_θ ‖ π_ref)``,
    whose gradient is not of the closed ``c P - Q`` form."""
    from deft.objectives import Param, Terms, register

    @register("test_reverse_kl", "autograd", "test only", params={"lam": Param(0.5, "weight")}, needs=("ref",))
    def _reverse_kl(d, lam):
        return Terms(-d.logp + lam * (d.logP.exp() * (d.logP - d.ref_logP)).sum(-1))

    yield "test_reverse_kl"
    REGISTRY.pop("test_reverse_kl")


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_autograd_objectives_are_differentiated_per_sub_block(reverse_kl, reduction):
    truth, c64 = assert_sub_blocks_match_plain(reverse_kl, reduction, seed=12)
    # the plain path's value is the formula
    keep = c64["y"] != -100
    logits = (c64["h"] @ c64["w"].T + c64["b"])[keep]
    logP = torch.log_softmax(logits, -1)
    logR = torch.log_softmax((c64["th"] @ c64["tw"].T)[keep], -1)
    expected = -logP.gather(-1, c64["y"][keep, None])[:, 0] + 0.5 * (logP.exp() * (logP - logR)).sum(-1)
    value = truth[0].sum() if reduction == "sum" else truth[0][keep]
    expected = expected.sum() if reduction == "sum" else expected
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)
