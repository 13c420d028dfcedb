"""Tests of deft.fused.context: the in-place row kernels of the chunk loop (logits, softmax, log-sum-exp,
log-softmax written into a given buffer) against torch's own functions, including logits far apart."""

import pytest
import torch

from deft.fused.context import log_softmax_into, logits_into, softmax_and_lse_into, softmax_into


def _logits():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 11, generator=g) * 3
    z[3] = torch.linspace(-1e4, 1e4, 11)  # all but one probability underflow in fp32
    z[4] = 0.0  # uniform row
    return z


def test_softmax_and_lse_into_equal_torch_and_fill_the_buffer():
    z = _logits()
    out = torch.empty_like(z)
    probs, lse = softmax_and_lse_into(z, out)
    assert probs.data_ptr() == out.data_ptr()
    torch.testing.assert_close(probs, torch.softmax(z.double(), -1).float(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lse.double(), torch.logsumexp(z.double(), -1), rtol=1e-6, atol=1e-5)
    assert lse[4].item() == pytest.approx(torch.log(torch.tensor(11.0)).item(), rel=1e-6)
    assert lse[3].item() == pytest.approx(1e4, rel=1e-7)
    assert torch.equal(softmax_into(z, torch.empty_like(z)), probs)


def test_log_softmax_into_equals_torch_without_touching_the_logits():
    z = _logits()
    before = z.clone()
    out = torch.empty_like(z)
    got = log_softmax_into(z, out)
    assert got.data_ptr() == out.data_ptr() and torch.equal(z, before)
    torch.testing.assert_close(got.double(), torch.log_softmax(z.double(), -1), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_logits_into_are_fp32_h_w_t_plus_b(dtype, with_bias):
    g = torch.Generator().manual_seed(1)
    h, w = torch.randn(4, 6, generator=g).to(dtype), torch.randn(9, 6, generator=g).to(dtype)
    b = torch.randn(9, generator=g).to(dtype) if with_bias else None
    expect = h.double() @ w.double().T + (b.double() if with_bias else 0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=5e-2)
    fresh = logits_into(h, w, b)
    assert fresh.dtype == torch.float32 and fresh.shape == (4, 9)
    torch.testing.assert_close(fresh.double(), expect, **tol)
    out = torch.full((4, 9), float("nan"))
    into = logits_into(h, w, b, out)
    assert into.data_ptr() == out.data_ptr()
    torch.testing.assert_close(into.double(), expect, **tol)
