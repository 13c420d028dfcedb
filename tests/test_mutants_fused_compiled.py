"""The gate step's implementations (deft.fused.compiled, deft.fused.gate) at their borders.

Written to kill mutants of src/deft/fused/compiled.py and gate.py that survived ``make mutate``
(docs/testing.md). Expected values come from numpy anchors (:mod:`anchor_numpy`, the paper's
formulas in float64) or hand computations; the compiled passes run for real (inductor's C++
backend on a CPU), except where a test replaces them to stand for a machine without a compiler.
"""

import importlib.util
import sys

import numpy as np
import pytest
import torch

import deft
from anchor_numpy import Y, Z, loss_and_grad, pick, softmax
from deft.fused import chunked, compiled, context, gate
from deft.objectives import NEEDS, REGISTRY, Need, PerTokenLoss, register, register_need

EYE = np.eye(5)
IMPLS = ["eager", "compile"]


def floor_focus(z, y):
    """``cayley_floor``'s focus ``a = clip(f + (1-f) p/(2-p), 0.001, 1)``, ``f = 0.5 mean(p)``
    over the loss tokens (the reference code's Cayley_Trans), from float64 logits ``z [n, V]``."""
    p = pick(softmax(z), y)
    f = 0.5 * p.mean()
    return np.clip(f + (1.0 - f) * p / (2.0 - p), 0.001, 1.0)


def floor_loss(z, y):
    """``(1 - p^a) / a`` with the floor focus ``a`` (paper Eq. 10)."""
    p = pick(softmax(z), y)
    a = floor_focus(z, y)
    return (1.0 - p ** a) / a


# ------------------------------------------------- the two compiled passes, run as plain Python
# Compiled, these functions are the compiled step; called directly they run eagerly, so their
# formulas are checked here in milliseconds, the engine tests below check the compilation.
ROWS = np.array([
    [*Z[0]],
    [100.0, 99.0, 98.0, -100.0, 97.5],  # exp(z) overflows fp32 without the shift by the maximum
    [0.5, -np.inf, 2.0, -np.inf, 1.0],  # masked entries: exp(-inf) = 0 adds nothing to the entropy
])
ROW_LABELS = np.array([0, 1, 4])


def row_stats_float64(z, y):
    """``(lse, log p_y, Σ P², H)`` per row, from float64 logits ``z [n, V]`` (P = softmax(z),
    H = -Σ P log P over the entries with P > 0)."""
    top = z.max(-1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(-1))
    probs = np.exp(z - lse[:, None])
    logp = z[np.arange(len(y)), y] - lse
    logs = np.where(probs > 0, z - lse[:, None], 0.0)
    return lse, logp, (probs ** 2).sum(-1), -(probs * logs).sum(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_stats_pass_gives_lse_logp_sum_p2_and_entropy_in_fp32(dtype):
    """The statistics pass over ``[c, V]`` logits in any dtype: every output is fp32, equal to the
    float64 formula on the logits as given (bf16 logits: on their rounded values)."""
    z = torch.tensor(ROWS, dtype=dtype)
    got = compiled.row_stats(z, torch.tensor(ROW_LABELS))
    want = row_stats_float64(z.double().numpy(), ROW_LABELS)
    for name, g, w in zip(("lse", "logp", "sum_p2", "entropy"), got, want):
        assert g.dtype == torch.float32, name
        np.testing.assert_allclose(g.numpy(), w, rtol=2e-6, atol=2e-5, err_msg=name)


def test_row_stats_entropy_of_a_one_hot_row_is_zero_not_negative():
    z = torch.tensor([[0.0, -200.0, -300.0, -250.0, -400.0]])
    _, logp, sum_p2, entropy = compiled.row_stats(z, torch.tensor([0]))
    assert entropy.item() == 0.0 and logp.item() == 0.0 and sum_p2.item() == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_write_grad_pass_is_coef_times_softmax_minus_one_hot(dtype):
    z = torch.tensor(ROWS[:2], dtype=torch.float32)
    y = torch.tensor(ROW_LABELS[:2])
    coef = np.array([0.75, -2.0])
    lse = torch.logsumexp(z.double(), -1).float()
    g = compiled.write_grad(z, lse, torch.tensor(coef, dtype=torch.float32), y, dtype)
    assert g.dtype == dtype
    want = coef[:, None] * (softmax(ROWS[:2]) - np.eye(5)[ROW_LABELS[:2]])
    tol = 1e-5 if dtype == torch.float32 else 8e-3
    np.testing.assert_allclose(g.double().numpy(), want, rtol=tol, atol=tol)


def test_torch_version_of_a_source_build_is_its_major_and_minor(monkeypatch):
    """Source builds (e.g. NVIDIA's containers) report versions such as ``2.6.0a0+ecf3bae40a``:
    the chunk loop still imports and compares (major, minor) = (2, 6) against the GEMM it needs."""
    monkeypatch.setattr(torch, "__version__", "2.6.0a0+ecf3bae40a.nv25.01")
    spec = importlib.util.spec_from_file_location("deft.fused._chunked_version_probe", chunked.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    assert module._TORCH_VERSION == (2, 6)


# ------------------------------------------------------------ the gate step in the engine
def anchor(spec, impl, z=Z, y=Y, reduction="sum", **kw):
    """Loss, ``dL/dz`` and statistics of the fused engine with the identity head (hidden = logits)."""
    h = torch.tensor(z, requires_grad=True)
    loss, stats = deft.fused_token_loss(h, torch.tensor(np.eye(z.shape[1])), torch.tensor(y), spec, impl=impl,
                                        reduction=reduction, return_stats=True, **kw)
    upstream = kw.pop("upstream", None)
    (loss if upstream is None else loss * upstream).sum().backward()
    return loss.detach().numpy(), h.grad.numpy(), stats


@pytest.mark.parametrize("impl", IMPLS)
def test_the_gradient_carries_the_per_token_upstream_scale(impl):
    """``g = s * scale * (P - δ_y)`` (paper Eq. 6 with the upstream per-token gradient of
    ``reduction="none"``): for ``1 - p`` the gate is ``s = p``; the scale multiplies it row by row."""
    scale = np.array([2.0, 0.5, 3.0])
    h = torch.tensor(Z, requires_grad=True)
    loss = deft.fused_token_loss(h, torch.eye(5, dtype=torch.float64), torch.tensor(Y), "p", reduction="none",
                                 chunk_size=2, impl=impl)
    (loss * torch.tensor(scale)).sum().backward()
    want_loss, want_grad = loss_and_grad("p")
    np.testing.assert_allclose(loss.detach().numpy(), want_loss, rtol=1e-6)
    np.testing.assert_allclose(h.grad.numpy(), scale[:, None] * want_grad, rtol=1e-4, atol=1e-6)


@pytest.fixture
def per_token_bonus():
    """A per-token need of source 'batch' (not a built-in field) and the gate objective ``-b log p``."""
    register_need(Need("zz_gate_bonus", "a per-token bonus", "batch", "zz_gate_bonus"))

    @register("test_gate_bonus_nll", "gate", "test only: -b log p", needs=("zz_gate_bonus",))
    def _fn(t):
        return PerTokenLoss(-t.zz_gate_bonus * t.logp)

    yield "test_gate_bonus_nll"
    REGISTRY.pop("test_gate_bonus_nll")
    NEEDS.pop("zz_gate_bonus")


@pytest.mark.parametrize("impl", IMPLS)
def test_a_registered_per_token_input_reaches_the_step(per_token_bonus, impl):
    """Any need field reaches the objective's Tokens: loss ``-b log p``, gradient ``b (P - δ_y)``."""
    bonus = np.array([0.5, 2.0, -1.0])
    loss, grad, _ = anchor(per_token_bonus, impl, reduction="none", chunk_size=2,
                           inputs={"zz_gate_bonus": torch.tensor(bonus)})
    np.testing.assert_allclose(loss, -bonus * np.log(pick(softmax(Z))), rtol=1e-5)
    np.testing.assert_allclose(grad, bonus[:, None] * (softmax(Z) - EYE[Y]), rtol=1e-4, atol=1e-6)


def test_the_compiled_step_serves_every_chunk_length():
    """The last, partial chunk has another length each call: ten lengths in a row run through the
    compiled passes (shapes dynamic, not one graph per length up to torch's recompile limit)."""
    g = np.random.default_rng(4)
    z = g.normal(size=(11, 7)) * 2
    y = g.integers(0, 7, size=11)
    for rows in range(2, 12):
        loss, grad, _ = anchor("nll", "compile", z=z[:rows], y=y[:rows], reduction="none")
        np.testing.assert_allclose(loss, -np.log(pick(softmax(z[:rows]), y[:rows])), rtol=1e-5)
        np.testing.assert_allclose(grad, softmax(z[:rows]) - np.eye(7)[y[:rows]], atol=1e-6)


def no_compiler(name):
    raise RuntimeError(f"no C++ compiler on this machine (asked to compile {name})")


def test_the_eager_step_never_needs_the_compiler(monkeypatch):
    """impl='eager' (the default) runs no compiled pass, the batch floor's included."""
    monkeypatch.setattr(compiled, "compiled", no_compiler)
    loss, grad, stats = anchor("cayley_floor", "eager", chunk_size=2)
    want_loss, want_grad = loss_and_grad("cayley_floor")
    assert float(loss) == pytest.approx(want_loss.sum(), rel=1e-6)
    np.testing.assert_allclose(stats["focus"].numpy(), floor_focus(Z, Y), rtol=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_label_probability_below_the_smallest_normal_float(impl):
    """p = e^-100 and e^-200 (subnormal and zero in fp32): log p from the row's logsumexp
    (its logits formed again), not from log P_y; the gradient is P - δ_y."""
    z = np.array([[100.0, 0.0, 50.0, 99.0, 98.0], [0.0, 1.0, 2.0, 3.0, -197.0], Z[2]])
    y = np.array([1, 4, 2])
    loss, grad, stats = anchor("nll", impl, z=z, y=y, reduction="none", chunk_size=2)
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    np.testing.assert_allclose(loss, lse - z[np.arange(3), y], rtol=1e-6)
    np.testing.assert_allclose(grad, softmax(z) - EYE[y], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats["gate"].numpy(), 1.0, rtol=1e-6)


# ---------------------------------------------------------- the batch floor, gradients, statistics
def floor_case(n, hidden, vocab, seed):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, hidden)), g.normal(size=(vocab, hidden)), g.integers(0, vocab, size=n)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ["more_tokens_than_hidden_units", "one_loss_token"])
def test_batch_floor_is_the_mean_over_every_loss_token(case, impl):
    """``cayley_floor``'s ``f = 0.5 mean(p)`` averages over all M loss tokens: M = 7 rows of
    hidden size 2 in chunks of 2 (M > H), and a single loss token among ignored ones (M = 1)."""
    if case == "one_loss_token":
        h, w, y = floor_case(4, 3, 5, seed=1)
        y[[0, 1, 3]] = -100
    else:
        h, w, y = floor_case(7, 2, 3, seed=0)
    keep = y != -100
    z = (h @ w.T)[keep]
    loss, stats = deft.fused_token_loss(torch.tensor(h), torch.tensor(w), torch.tensor(y), "cayley_floor", impl=impl,
                                        chunk_size=2, return_stats=True)
    np.testing.assert_allclose(stats["focus"].numpy()[keep], floor_focus(z, y[keep]), rtol=1e-5)
    assert stats["num_tokens"] == int(keep.sum())
    assert float(loss) == pytest.approx(floor_loss(z, y[keep]).sum(), rel=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_floor_of_bf16_logits_adds_nothing_to_them(impl):
    """bf16 head: the statistic pass forms the loss pass's logits. 127.5 / 127 and -127.5 / -127 are
    exact in bf16, but shifted by one they round, which would move p by e^0.5; here mean p = 0.5."""
    h = torch.tensor([[127.5, 127.0], [-127.5, -127.0]], dtype=torch.bfloat16)
    z, y = np.array([[127.5, 127.0], [-127.5, -127.0]]), np.array([0, 0])
    loss, stats = deft.fused_token_loss(h, torch.eye(2, dtype=torch.bfloat16), torch.tensor(y), "cayley_floor",
                                        impl=impl, return_stats=True)
    assert pick(softmax(z), y).mean() == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(stats["focus"].numpy(), floor_focus(z, y), rtol=1e-5)
    assert float(loss) == pytest.approx(floor_loss(z, y).sum(), rel=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("trainable", ["hidden", "weight"])
def test_gradient_of_only_the_input_that_requires_it(trainable, impl):
    h, w, y = floor_case(5, 4, 6, seed=2)
    y[1] = -100

    def tensors():
        return (torch.tensor(h, requires_grad=trainable == "hidden"),
                torch.tensor(w, requires_grad=trainable == "weight"))

    ht, wt = tensors()
    deft.fused_token_loss(ht, wt, torch.tensor(y), "deft", impl=impl, chunk_size=2).backward()
    hr, wr = tensors()
    deft.token_loss(hr @ wr.T, torch.tensor(y), "deft", reduction="sum").backward()
    ours, ref = (ht, hr) if trainable == "hidden" else (wt, wr)
    assert ours.grad is not None
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_losses_and_statistics_of_every_chunk_without_gradients(impl):
    h, w, y = floor_case(7, 4, 6, seed=3)
    with torch.no_grad():
        loss, stats = deft.fused_token_loss(torch.tensor(h), torch.tensor(w), torch.tensor(y), "nll", impl=impl,
                                            chunk_size=2, return_stats=True)
    p = pick(softmax(h @ w.T), y)
    assert float(loss) == pytest.approx(-np.log(p).sum(), rel=1e-6)
    np.testing.assert_allclose(stats["p"].numpy(), p, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("weight_dtype, bias_dtype", [(torch.bfloat16, torch.float32), (torch.float32, torch.bfloat16)])
def test_weight_and_bias_gradients_each_rounded_once_to_their_own_dtype(weight_dtype, bias_dtype, impl):
    """257 tokens with logits (0, 0) and label 0 (nll): dL/dz = (-0.5, 0.5) per token, so
    dL/db = dL/dW (hidden states 1) = (-128.5, 128.5), exact in fp32 and 128 in bf16 (9 bits).
    Each gradient is accumulated in fp32 and rounded once, to its own parameter's dtype."""
    n = 257
    h = torch.ones(n, 1, dtype=weight_dtype)
    w = torch.zeros(2, 1, dtype=weight_dtype, requires_grad=True)
    b = torch.zeros(2, dtype=bias_dtype, requires_grad=True)
    loss = deft.fused_token_loss(h, w, torch.zeros(n, dtype=torch.long), "nll", bias=b, impl=impl)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(n * np.log(2.0), rel=1e-6)
    assert b.grad.dtype == bias_dtype and w.grad.dtype == weight_dtype
    exact = [-128.5, 128.5]
    if bias_dtype == torch.float32:
        assert b.grad.tolist() == exact
    if weight_dtype == torch.float32:
        assert w.grad[:, 0].tolist() == exact


# ------------------------------------------------ the eager step's statistics read from P
def test_entropy_of_probabilities_block_by_block(monkeypatch):
    """``-Σ P log P`` with ``0 log 0 = 0``, in blocks of 2 rows (a partial last one) as in blocks of all."""
    probs = torch.tensor(np.vstack([softmax(Z), [[0.5, 0.5, 0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0, 0.0]]]))
    probs = probs.float()
    want = -np.where(probs.numpy() > 0, probs.numpy() * np.log(np.maximum(probs.numpy(), 1e-30)), 0).sum(-1)
    whole = context.probs_entropy(probs)
    monkeypatch.setattr(context, "_BLOCK_BYTES", 2 * 4 * 5)
    np.testing.assert_allclose(context.probs_entropy(probs).numpy(), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(whole.numpy(), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("k", [2, 3, 5, 9])
def test_top_k_entropy_from_probabilities_equals_the_one_from_logits(k):
    """EAFT's top-k entropy from ``P`` (eager) equals the one from the logits (compiled, the base
    class), k larger than the vocabulary included; a zero probability adds nothing."""
    z = torch.tensor(np.vstack([Z, [[3.0, -np.inf, 0.0, -np.inf, 1.0]]]), dtype=torch.float32)
    y = torch.tensor([0, 3, 2, 0])
    lse = torch.logsumexp(z, -1)
    logp = z.gather(-1, y[:, None])[:, 0] - lse
    from_probs = gate.ChunkTokens(logp, lse, probs=torch.softmax(z, -1)).topk_entropy(k)
    from_logits = gate.ChunkTokens(logp, lse, logits=z).topk_entropy(k)
    top = np.sort(z.numpy().astype(np.float64), -1)[:, ::-1][:, :min(k, 5)]
    e = np.exp(top - top[:, :1])
    q = e / e.sum(-1, keepdims=True)
    want = -np.where(q > 0, q * np.log(np.maximum(q, 1e-300)), 0.0).sum(-1)  # q = 0 where z = -inf
    np.testing.assert_allclose(from_probs.numpy(), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(from_logits.numpy(), want, rtol=1e-5, atol=1e-7)
