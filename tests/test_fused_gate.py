"""Tests of deft.fused.gate: the gate path of the fused loss writes ``g = s (P - δ_y)`` (paper Eq. 6) per
token, with ``s`` the objective's gate, times the token weight. With the identity as LM head the
logits are the hidden states, so ``dL/dh`` is ``g`` itself and is checked against the closed form."""

import pytest
import torch

import deft


def _case(seed=0, n=7, v=9):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(n, v, generator=g, dtype=torch.float64) * 2).float().requires_grad_()
    y = torch.randint(0, v, (n,), generator=g)
    y[2] = -100  # an ignored token: no loss, no gradient
    return h, torch.eye(v), y


def _closed_form(h, y, gate_of_p, weights=None):
    z = h.detach().double()
    probs = torch.softmax(z, -1)
    keep = y != -100
    p = probs[torch.arange(len(y)), y.clamp(min=0)]
    s = gate_of_p(p) * keep
    if weights is not None:
        s = s * weights.double()
    onehot = torch.nn.functional.one_hot(y.clamp(min=0), z.shape[-1]).double()
    return s.unsqueeze(-1) * (probs - onehot), p


@pytest.mark.parametrize("name,gate_of_p", [
    ("nll", lambda p: torch.ones_like(p)),  # -log p: s = 1
    ("p", lambda p: p),  # 1 - p: s = p
    ("dft", lambda p: p),  # -sg(p) log p: s = p
    ("power:alpha=0.5", lambda p: p ** 0.5),  # (1 - p^a) / a: s = p^a
])
def test_gradient_is_the_gate_times_the_error(name, gate_of_p):
    h, w, y = _case()
    loss = deft.fused_token_loss(h, w, y, name, reduction="sum", chunk_size=3)
    loss.backward()
    expect, _ = _closed_form(h, y, gate_of_p)
    torch.testing.assert_close(h.grad.double(), expect, rtol=1e-5, atol=1e-6)
    assert torch.all(h.grad[2] == 0)


def test_token_weights_scale_the_gate_and_the_statistics_report_it():
    h, w, y = _case(seed=3)
    weights = torch.tensor([1.0, 0.5, 2.0, 0.0, 3.0, 1.0, 0.25])
    loss, stats = deft.fused_token_loss(h, w, y, "p", reduction="sum", token_weights=weights, return_stats=True)
    loss.backward()
    expect, p = _closed_form(h, y, lambda p: p, weights)
    torch.testing.assert_close(h.grad.double(), expect, rtol=1e-5, atol=1e-6)
    keep = y != -100
    torch.testing.assert_close(loss.double(), ((1 - p) * weights.double() * keep).sum(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats["p"][keep].double(), p[keep], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(stats["gate"][keep].double(), (p * weights.double())[keep], rtol=1e-5, atol=1e-7)


def test_eager_log_p_keeps_its_digits_when_the_logits_are_large():
    """Logits near ±1e4 (fp32 spacing there ~1e-3): the eager step's ``log p = log P_y`` is read
    from the softmax of the shifted logits, so the loss ``-log p`` keeps fp32's relative precision;
    ``z_y - lse`` would lose the digits that cancel (an error of ~3e-4 on ``-log p ≈ 1``)."""
    z = torch.tensor([[10000.0, 10000.5, 9999.0, 9990.0], [-8000.0, -8001.25, -7999.5, -8003.0],
                      [0.5, 1.0, -1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 3])
    want = torch.logsumexp(z, -1) - z[torch.arange(3), y]  # float64
    loss = deft.fused_token_loss(z.float(), torch.eye(4), y, "nll", reduction="none", impl="eager")
    torch.testing.assert_close(loss.double(), want, rtol=1e-6, atol=0.0)


def test_chunk_tokens_statistics_are_keyword_only():
    """``ChunkTokens(logp, lse, *, probs=..., logits=..., known=..., inputs=...)``: which of ``P`` or ``z``
    a chunk hands over is always named, never taken from a position."""
    import inspect

    from deft.fused.gate import ChunkTokens

    params = list(inspect.signature(ChunkTokens).parameters.values())
    assert [p.name for p in params[:2]] == ["logp", "lse"]
    assert [p.kind for p in params[:2]] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2
    assert {p.kind for p in params[2:]} == {inspect.Parameter.KEYWORD_ONLY}
