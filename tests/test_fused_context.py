"""Tests of deft.fused.context: the in-place row kernels of the chunk loop (logits, softmax, log-sum-exp,
log-softmax written into a given buffer) against torch's own functions, including logits far apart; the
entropy of probabilities row block by row block; the plan's logits dtype."""

import warnings

import pytest
import torch

from deft.fused.context import log_softmax_into, logits_into, probs_entropy, softmax_and_lse_into, softmax_into


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


def _entropy(probs):
    """``-Σ_v P_v log P_v`` per row in fp64, ``0 log 0 = 0``."""
    p = probs.double()
    return -torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(-1)


def test_probs_entropy_over_several_row_blocks_without_warnings():
    """2053 rows of V 1024 are three blocks of 1024 rows (4 MiB of fp32 each), the last one of 5:
    every row's entropy lands in its own place (a certain row: 0; a row with zeros: 0 log 0 = 0),
    and no output is resized on the way (torch warns when an ``out=`` tensor is)."""
    g = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(2053, 1024, generator=g) * 3, -1)
    probs[1500] = 0.0
    probs[1500, 7] = 1.0
    probs[2050, :512] = 0.0
    probs[2050] /= probs[2050].sum()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = probs_entropy(probs)
    assert got.dtype == torch.float32 and got.shape == (2053,)
    torch.testing.assert_close(got.double(), _entropy(probs), rtol=1e-5, atol=1e-6)
    assert got[1500].item() == 0.0


@pytest.mark.parametrize("rows, vocab", [(0, 7), (3, 0), (6, 4), (1048577, 1)])
def test_probs_entropy_of_edge_shapes(rows, vocab):
    """No rows: an empty result; an empty vocabulary: 0 per row (an empty sum); V = 4; a one-token
    vocabulary (P = 1, entropy 0) over more rows than one block holds (4 MiB / 4 bytes = 1048576)."""
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(rows, vocab, generator=g), -1) if vocab > 1 else torch.ones(rows, vocab)
    got = probs_entropy(probs)
    assert got.dtype == torch.float32 and got.shape == (rows,)
    torch.testing.assert_close(got.double(), _entropy(probs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, impl, dtype, want", [
    ("nll", "compile", torch.bfloat16, torch.bfloat16),
    ("nll", "eager", torch.bfloat16, torch.float32),
    ("gem", "compile", torch.bfloat16, torch.float32),
    ("nll", "compile", torch.float32, torch.float32),
])
def test_plan_logits_dtype_is_the_products_only_for_the_compiled_gate_step(name, impl, dtype, want):
    """The chunk's logits (and the buffers of the chunk loop and of the statistics pass) are fp32,
    except for a gate objective's compiled step, which keeps them in the products' dtype."""
    from deft.fused.prepare import prepare
    from deft.objectives import parse_objective

    g = torch.Generator().manual_seed(4)
    h, w = torch.randn(5, 6, generator=g).to(dtype), torch.randn(9, 6, generator=g).to(dtype)
    call = prepare(parse_objective(name), h, w, torch.tensor([1, 2, 3, 4, 5]), bias=None, ignore_index=-100,
                   reduction="sum", chunk_size=None, named={}, inputs=None, token_weights=None, want_stats=False,
                   check_inputs=True, impl=impl)
    assert call.plan.impl == impl and call.plan.logits_dtype == want
