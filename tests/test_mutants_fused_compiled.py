"""The fused engine's compiled kernel path at its borders.

Written to kill mutants of src/deft/fused/kernel.py that survived ``make mutate`` (docs/testing.md).
Expected values come from the unfused reference (``deft.token_loss`` on full logits + autograd),
numpy anchors (:mod:`anchor_numpy`, the paper's formulas in float64) or hand computations; the
compiled passes run for real (inductor's C++ backend on a CPU), except where a test replaces
them to stand for a machine without a compiler.
"""

import importlib.util
import linecache
import warnings

import numpy as np
import pytest
import torch

import deft
from anchor_numpy import Y, Z, loss_and_grad, losses, pick, softmax
from deft.fused import kernel
from deft.fused.kernel import fused_gate_loss, gate_chunk, resolve_kernel
from deft.objectives import NEEDS, REGISTRY, Need, PerTokenLoss, register, register_need

EYE = np.eye(5)


def zy(dtype=torch.float32):
    """The anchor's 3 x 5 logits and labels as tensors."""
    return torch.tensor(Z, dtype=dtype), torch.tensor(Y)


def floor_focus(z, y):
    """``cayley_floor``'s focus ``a = clip(f + (1-f) p/(2-p), 0.001, 1)``, ``f = 0.5 mean(p)``
    over the loss tokens (the reference code's Cayley_Trans), from float64 logits ``z [n, V]``."""
    p = pick(softmax(z), y)
    f = 0.5 * p.mean()
    return np.clip(f + (1.0 - f) * p / (2.0 - p), 0.001, 1.0)


# ------------------------------------------------- the two compiled passes, run as plain Python
# The kernel compiles these two functions; called directly they run eagerly (no compiler), so
# their formulas are checked here in milliseconds, the compiled tests below check the compilation.
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
    float64 formula on the logits as given (bf16 logits: on their rounded values; ``log p_y =
    z_y - lse`` loses fp32's relative precision of ``|z|`` ~ 100 to cancellation)."""
    z = torch.tensor(ROWS, dtype=dtype)
    got = kernel._row_stats(z, torch.tensor(ROW_LABELS))
    want = row_stats_float64(z.double().numpy(), ROW_LABELS)
    for name, g, w in zip(("lse", "logp", "sum_p2", "entropy"), got, want):
        assert g.dtype == torch.float32, name
        np.testing.assert_allclose(g.numpy(), w, rtol=2e-6, atol=2e-5, err_msg=name)


def test_row_stats_entropy_of_a_one_hot_row_is_zero_not_negative():
    """A row whose softmax is one-hot up to fp32: ``H`` = 0 exactly (rounding may not make it
    negative: the entropy is clamped at 0)."""
    z = torch.tensor([[0.0, -200.0, -300.0, -250.0, -400.0]])
    _, logp, sum_p2, entropy = kernel._row_stats(z, torch.tensor([0]))
    assert entropy.item() == 0.0 and logp.item() == 0.0 and sum_p2.item() == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_write_grad_pass_is_coef_times_softmax_minus_one_hot(dtype):
    """``g = coef (softmax(z) - δ_y)`` ``[c, V]``, from fp32 statistics, written in the asked dtype."""
    z = torch.tensor(ROWS[:2], dtype=torch.float32)
    y = torch.tensor(ROW_LABELS[:2])
    coef = np.array([0.75, -2.0])
    lse = torch.logsumexp(z.double(), -1).float()
    g = kernel._write_grad(z, lse, torch.tensor(coef, dtype=torch.float32), y, dtype)
    assert g.dtype == dtype
    want = coef[:, None] * (softmax(ROWS[:2]) - np.eye(5)[ROW_LABELS[:2]])
    tol = 1e-5 if dtype == torch.float32 else 8e-3  # fp32: z - lse at |z| ~ 100
    np.testing.assert_allclose(g.double().numpy(), want, rtol=tol, atol=tol)


# ------------------------------------------------------------------------- gate_chunk's contract
@pytest.mark.parametrize("kernel_name", ["eager", "compile"])
def test_chunk_gradient_carries_the_upstream_scale(kernel_name):
    """``g = s * scale * (P - δ_y)`` (paper Eq. 6 with the upstream per-token gradient): for the
    objective ``1 - p`` the gate is ``s = p``; the scale multiplies it, row by row."""
    obj = deft.parse_objective("p")
    z, y = zy()
    scale = np.array([2.0, 0.5, 3.0])
    loss, g, stats = gate_chunk(obj, z, y, kernel=kernel_name, scale=torch.tensor(scale, dtype=torch.float32))
    want_loss, want_grad = loss_and_grad("p")
    np.testing.assert_allclose(loss.numpy(), want_loss, rtol=1e-6)
    np.testing.assert_allclose(g.numpy(), scale[:, None] * want_grad, rtol=1e-4, atol=1e-6)
    assert stats == {}  # statistics only when asked for (want_stats defaults to False)


def test_gate_chunk_takes_the_chunk_by_keyword_and_options_only_by_keyword():
    """``objective``, ``z`` and ``y`` are ordinary parameters (keywords allowed); everything after
    them is keyword-only, so a stray fourth positional argument is refused."""
    obj = deft.parse_objective("nll")
    z, y = zy()
    loss, g, stats = gate_chunk(objective=obj, z=z, y=y, want_stats=True)
    np.testing.assert_allclose(loss.numpy(), -np.log(pick(softmax(Z))), rtol=1e-6)
    np.testing.assert_allclose(stats["p"].numpy(), pick(softmax(Z)), rtol=1e-6)
    with pytest.raises(TypeError):
        gate_chunk(obj, z, y, "eager")


@pytest.mark.parametrize("name", ["auto", "triton", "fast", ""])
def test_gate_chunk_refuses_other_kernel_names(name):
    """gate_chunk runs exactly 'eager' or 'compile' ('auto' is resolved by the callers)."""
    z, y = zy()
    with pytest.raises(ValueError, match="kernel must be 'eager' or 'compile' here"):
        gate_chunk(deft.parse_objective("nll"), z, y, kernel=name)


def test_gate_chunk_refuses_a_distribution_objective():
    z, y = zy()
    with pytest.raises(ValueError, match="gate_chunk runs gate objectives only; 'kd' is a distribution"):
        gate_chunk(deft.parse_objective("kd"), z, y)


@pytest.mark.parametrize("device", ["cpu", "meta", "mps", "xpu"])
def test_auto_compiles_on_cuda_only(device, monkeypatch):
    monkeypatch.delenv("DEFT_FUSED_KERNEL", raising=False)
    assert resolve_kernel("auto", device) == "eager"
    assert resolve_kernel("auto", "cuda") == "compile"


def test_torch_version_of_a_source_build_is_its_major_and_minor(monkeypatch):
    """Source builds (e.g. NVIDIA's containers) report versions such as ``2.6.0a0+ecf3bae40a``:
    the module still imports and compares (major, minor) = (2, 6) against the GEMM it needs."""
    monkeypatch.setattr(torch, "__version__", "2.6.0a0+ecf3bae40a.nv25.01")
    spec = importlib.util.spec_from_file_location("deft.fused._kernel_version_probe", kernel.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._TORCH_VERSION == (2, 6)


@pytest.fixture
def per_token_bonus():
    """A per-token need of source 'batch' (not one of the two built-in fields) and the gate
    objective ``-b log p`` reading it."""
    register_need(Need("zz_kernel_bonus", "a per-token bonus", "batch", "zz_kernel_bonus"))

    @register("test_kernel_bonus_nll", "gate", "test only: -b log p", needs=("zz_kernel_bonus",))
    def _fn(t):
        return PerTokenLoss(-t.zz_kernel_bonus * t.logp)

    yield deft.parse_objective("test_kernel_bonus_nll")
    REGISTRY.pop("test_kernel_bonus_nll")
    NEEDS.pop("zz_kernel_bonus")


@pytest.mark.parametrize("kernel_name", ["eager", "compile"])
def test_a_registered_per_token_input_reaches_the_chunk(per_token_bonus, kernel_name):
    """Any need field passed in ``inputs`` reaches the objective's Tokens (not only the two
    built-in ones): loss ``-b log p``, gradient ``b (P - δ_y)``."""
    z, y = zy()
    bonus = np.array([0.5, 2.0, -1.0])
    loss, g, _ = gate_chunk(per_token_bonus, z, y, kernel=kernel_name,
                            inputs={"zz_kernel_bonus": torch.tensor(bonus, dtype=torch.float32)})
    np.testing.assert_allclose(loss.numpy(), -bonus * np.log(pick(softmax(Z))), rtol=1e-5)
    np.testing.assert_allclose(g.numpy(), bonus[:, None] * (softmax(Z) - EYE[Y]), rtol=1e-4, atol=1e-6)


def test_the_compiled_kernel_serves_every_chunk_length():
    """The last, partial chunk of each batch has another length (the number of loss tokens
    varies): ten lengths in a row run through the compiled passes (shapes dynamic, not one
    graph per length up to torch's recompile limit) and give the anchor's loss and gradient."""
    g = np.random.default_rng(4)
    z = g.normal(size=(11, 7)) * 2
    y = g.integers(0, 7, size=11)
    obj = deft.parse_objective("nll")
    for rows in range(2, 12):
        loss, grad, _ = gate_chunk(obj, torch.tensor(z[:rows], dtype=torch.float32), torch.tensor(y[:rows]),
                                   kernel="compile")
        np.testing.assert_allclose(loss.numpy(), -np.log(pick(softmax(z[:rows]), y[:rows])), rtol=1e-5)
        np.testing.assert_allclose(grad.numpy(), softmax(z[:rows]) - np.eye(7)[y[:rows]], atol=1e-6)


# --------------------------------------------------------------------- which passes run where
def no_compiler(name):
    raise RuntimeError(f"no C++ compiler on this machine (asked to compile {name})")


def test_the_eager_kernel_never_needs_the_compiler(monkeypatch):
    """kernel='eager' (the CPU default) runs no compiled pass, the batch floor's included: on a
    machine where compiling fails it gives the anchor's values."""
    monkeypatch.setattr(kernel, "_compiled", no_compiler)
    z, y = zy()
    loss, g, _ = gate_chunk(deft.parse_objective("nll"), z, y, kernel="eager")
    np.testing.assert_allclose(loss.numpy(), -np.log(pick(softmax(Z))), rtol=1e-6)
    h, w = torch.tensor(Z, requires_grad=True), torch.tensor(EYE, requires_grad=True)
    loss, stats = fused_gate_loss(h, w, torch.tensor(Y), "cayley_floor", kernel="eager", chunk_size=2,
                                  return_stats=True)
    loss.backward()
    want_loss, want_grad = loss_and_grad("cayley_floor")
    assert float(loss.detach()) == pytest.approx(want_loss.sum(), rel=1e-6)
    np.testing.assert_allclose(stats["focus"].numpy(), floor_focus(Z, Y), rtol=1e-6)
    np.testing.assert_allclose(h.grad.numpy(), want_grad, rtol=1e-4, atol=1e-6)


def test_the_compile_kernel_runs_every_statistics_pass_compiled(record_calls):
    """kernel='compile': the batch floor's pass over the logits (``cayley_floor``) is the
    compiled statistics pass too, one call per chunk, then one per chunk for the loss."""
    calls = record_calls(kernel, "_compiled")
    h, w = torch.tensor(Z, dtype=torch.float32), torch.eye(5)
    loss, stats = fused_gate_loss(h, w, torch.tensor(Y), "cayley_floor", kernel="compile", chunk_size=2,
                                  return_stats=True)
    assert calls.count("row_stats") == 2 * 2  # 3 rows in chunks of 2: batch pass + loss pass
    assert float(loss.detach()) == pytest.approx(losses("cayley_floor", Z, Z).sum(), rel=1e-5)
    np.testing.assert_allclose(stats["focus"].numpy(), floor_focus(Z, Y), rtol=1e-5)


def test_selected_normaliser_on_the_compiled_engine_step(monkeypatch):
    """``OnlyTopLogP-0.1`` through deft.fused_token_loss with DEFT_FUSED_KERNEL=compile (the
    engine's gate step is the compiled kernel): the mean divides by the selected tokens, the
    two of three with p >= 0.1 (p = 0.56, 0.22, 0.017)."""
    monkeypatch.setenv("DEFT_FUSED_KERNEL", "compile")
    p = pick(softmax(Z))
    keep = p >= 0.1
    assert keep.tolist() == [True, True, False]
    h = torch.tensor(Z, dtype=torch.float32, requires_grad=True)
    loss, stats = deft.fused_token_loss(h, torch.eye(5), torch.tensor(Y), "OnlyTopLogP-0.1", reduction="mean",
                                        chunk_size=2, return_stats=True)
    loss.backward()
    assert float(loss.detach()) == pytest.approx((-np.log(p) * keep).sum() / 2, rel=1e-5)
    np.testing.assert_allclose(h.grad.numpy(), keep[:, None] * (softmax(Z) - EYE[Y]) / 2, rtol=1e-4, atol=1e-6)
    assert stats["num_tokens"] == 2


def test_a_failed_compile_warns_once_with_its_first_line_at_the_engine_step(monkeypatch):
    """Under DEFT_FUSED_KERNEL=auto on a CUDA device (resolve_kernel stands for one), a kernel that
    fails to compile is reported with the first line of its error, attributed to the engine's
    chunk loop that called the step (the caller of gate_step), and the eager engine takes over."""

    def broken(name):
        raise RuntimeError("first line of the compiler's error\nsecond line: a long traceback")

    monkeypatch.setenv("DEFT_FUSED_KERNEL", "auto")
    monkeypatch.setattr(kernel, "resolve_kernel", lambda kernel_, device: "compile")
    monkeypatch.setattr(kernel, "_compiled", broken)
    monkeypatch.setattr(kernel, "_FAILED", [])
    h = torch.tensor(Z, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = deft.fused_token_loss(h, torch.tensor(EYE), torch.tensor(Y), "nll", chunk_size=2)
    ours = [w for w in caught if "compiled fused-loss kernel failed" in str(w.message)]
    assert len(ours) == 1 and ours[0].category is RuntimeWarning
    assert "(RuntimeError: first line of the compiler's error); using the eager engine" in str(ours[0].message)
    assert "second line" not in str(ours[0].message)
    assert ours[0].filename.endswith("chunked.py")
    assert "step(ctx)" in linecache.getline(ours[0].filename, ours[0].lineno)
    assert float(loss.detach()) == pytest.approx(-np.log(pick(softmax(Z))).sum(), rel=1e-6)


# ----------------------------------------------------------- fused_gate_loss: batch floor, grads
def floor_case(n, hidden, vocab, seed):
    g = np.random.default_rng(seed)
    h = g.normal(size=(n, hidden))
    w = g.normal(size=(vocab, hidden))
    y = g.integers(0, vocab, size=n)
    return h, w, y


@pytest.mark.parametrize("case", ["more_tokens_than_hidden_units", "one_loss_token"])
def test_batch_floor_is_the_mean_over_every_loss_token(case):
    """``cayley_floor``'s ``f = 0.5 mean(p)`` averages over all M loss tokens: M = 7 rows of
    hidden size 2 in chunks of 2 (M > H), and a single loss token among ignored ones (M = 1)."""
    if case == "one_loss_token":
        h, w, y = floor_case(4, 3, 5, seed=1)
        y[[0, 1, 3]] = -100
    else:
        h, w, y = floor_case(7, 2, 3, seed=0)
    keep = y != -100
    z = (h @ w.T)[keep]
    ht = torch.tensor(h, requires_grad=True)
    loss, stats = fused_gate_loss(ht, torch.tensor(w), torch.tensor(y), "cayley_floor", kernel="eager",
                                  chunk_size=2, return_stats=True)
    loss.backward()
    np.testing.assert_allclose(stats["focus"].numpy()[keep], floor_focus(z, y[keep]), rtol=1e-5)
    assert stats["num_tokens"] == int(keep.sum())
    assert float(loss.detach()) == pytest.approx(_floor_loss(z, y[keep]).sum(), rel=1e-5)


def _floor_loss(z, y):
    """``(1 - p^a) / a`` with the floor focus ``a`` (paper Eq. 10)."""
    p = pick(softmax(z), y)
    a = floor_focus(z, y)
    return (1.0 - p ** a) / a


def test_batch_floor_of_bf16_logits_adds_nothing_to_them():
    """bf16 head: the batch pass forms the same bf16 logits as the loss pass. Logits 127.5 / 127
    and -127.5 / -127 are exact in bf16, but shifted by one they round (128.5 -> 128, -128.5 -> -128),
    which would move p by e^0.5; here mean p = (σ(0.5) + σ(-0.5)) / 2 = 0.5 exactly."""
    h = torch.tensor([[127.5, 127.0], [-127.5, -127.0]], dtype=torch.bfloat16)
    w = torch.eye(2, dtype=torch.bfloat16)
    y = np.array([0, 0])
    z = np.array([[127.5, 127.0], [-127.5, -127.0]])
    loss, stats = fused_gate_loss(h, w, torch.tensor(y), "cayley_floor", kernel="eager", return_stats=True)
    p = pick(softmax(z), y)
    assert p.mean() == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(stats["focus"].numpy(), floor_focus(z, y), rtol=1e-5)
    assert float(loss.detach()) == pytest.approx(_floor_loss(z, y).sum(), rel=1e-5)


@pytest.mark.parametrize("trainable", ["hidden", "weight"])
def test_gradient_of_only_the_input_that_requires_it(trainable):
    """A frozen head (only the hidden states train) or frozen hidden states (only the head):
    the one gradient asked for equals autograd through the unfused reference."""
    h, w, y = floor_case(5, 4, 6, seed=2)
    y[1] = -100

    def tensors():
        return (torch.tensor(h, requires_grad=trainable == "hidden"),
                torch.tensor(w, requires_grad=trainable == "weight"))

    ht, wt = tensors()
    fused_gate_loss(ht, wt, torch.tensor(y), "deft", kernel="eager", chunk_size=2).backward()
    hr, wr = tensors()
    deft.token_loss(hr @ wr.T, torch.tensor(y), "deft", reduction="sum").backward()
    ours, ref = (ht, hr) if trainable == "hidden" else (wt, wr)
    assert ours.grad is not None
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-5, atol=1e-6)


def test_losses_and_statistics_of_every_chunk_without_gradients():
    """Under torch.no_grad (no gradient at all), every chunk still gives its losses and statistics."""
    h, w, y = floor_case(7, 4, 6, seed=3)
    with torch.no_grad():
        loss, stats = fused_gate_loss(torch.tensor(h), torch.tensor(w), torch.tensor(y), "nll", kernel="eager",
                                      chunk_size=2, return_stats=True)
    p = pick(softmax(h @ w.T), y)
    assert float(loss.detach()) == pytest.approx(-np.log(p).sum(), rel=1e-6)
    np.testing.assert_allclose(stats["p"].numpy(), p, rtol=1e-6)


# ------------------------------------------------------------ fused_gate_loss: arguments, stats
def test_fused_gate_loss_takes_its_tensors_by_keyword_and_options_only_by_keyword():
    h, w, y = torch.tensor(Z), torch.tensor(EYE), torch.tensor(Y)
    loss = fused_gate_loss(hidden=h, weight=w, labels=y, objective="nll", kernel="eager")
    assert float(loss) == pytest.approx(-np.log(pick(softmax(Z))).sum(), rel=1e-6)
    with pytest.raises(TypeError):
        fused_gate_loss(h, w, y, "nll", "eager")


def test_selected_normaliser_sums_but_refuses_the_mean():
    """``OnlyTopLogP-0.1`` divides its mean by the selected tokens, which this path does not count:
    ``reduction='sum'`` gives the masked sum, ``'mean'`` is refused (use deft.fused_token_loss)."""
    h, w, y = torch.tensor(Z, requires_grad=True), torch.tensor(EYE), torch.tensor(Y)
    p = pick(softmax(Z))
    keep = p >= 0.1
    loss = fused_gate_loss(h, w, y, "OnlyTopLogP-0.1", kernel="eager", reduction="sum")
    loss.backward()
    assert float(loss.detach()) == pytest.approx((-np.log(p) * keep).sum(), rel=1e-6)
    np.testing.assert_allclose(h.grad.numpy(), keep[:, None] * (softmax(Z) - EYE[Y]), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="with 'mean': use deft.fused_token_loss"):
        fused_gate_loss(h, w, y, "OnlyTopLogP-0.1", kernel="eager", reduction="mean")


@pytest.mark.parametrize("hidden_shape, weight_shape, labels_shape", [
    ((3, 5), (5, 4), (3,)),  # hidden size 5 > 4
    ((3, 4), (5, 5), (3,)),  # hidden size 4 < 5
    ((4, 5), (5, 5), (3,)),  # more rows than labels
    ((3, 5), (5, 5), (4,)),  # fewer rows than labels
    ((2, 3, 5), (5, 5), (2, 4)),  # batch x time: time differs
])
def test_misaligned_shapes_are_refused(hidden_shape, weight_shape, labels_shape):
    h, w = torch.zeros(hidden_shape), torch.zeros(weight_shape)
    y = torch.zeros(labels_shape, dtype=torch.long)
    with pytest.raises(ValueError, match=r"hidden \[N, H\], weight \[V, H\] and labels \[N\] must align"):
        fused_gate_loss(h, w, y, "nll", kernel="eager")


def test_batch_by_time_hidden_states():
    """hidden ``[B, T, H]`` with labels ``[B, T]`` (some ignored): the loss and statistics of the
    flattened tokens, statistics back in ``[B, T]``, ``num_tokens`` = the loss tokens (4, with H = 5)."""
    z = np.concatenate([Z, Z[::-1]])  # 6 rows
    y = np.concatenate([Y, Y[::-1]])
    y[[1, 4]] = -100
    keep = y != -100
    h = torch.tensor(z.reshape(2, 3, 5), requires_grad=True)
    loss, stats = fused_gate_loss(h, torch.tensor(EYE), torch.tensor(y.reshape(2, 3)), "nll", kernel="eager",
                                  return_stats=True)
    loss.backward()
    p = pick(softmax(z[keep]), y[keep])
    assert float(loss.detach()) == pytest.approx(-np.log(p).sum(), rel=1e-6)
    assert stats["p"].shape == (2, 3) and stats["num_tokens"] == 4
    np.testing.assert_allclose(stats["p"].numpy().reshape(-1)[keep], p, rtol=1e-6)
    assert np.all(stats["p"].numpy().reshape(-1)[~keep] == 0)
    want = np.zeros_like(z)
    want[keep] = softmax(z[keep]) - np.eye(5)[y[keep]]
    np.testing.assert_allclose(h.grad.numpy().reshape(6, 5), want, rtol=1e-4, atol=1e-6)


def test_a_nonnegative_ignore_index_keeps_the_labels_below_it():
    """ignore_index = 2 (e.g. a padding token's id): only the labels equal to 2 drop out; 0 and 1 stay."""
    h, w = torch.tensor(Z), torch.tensor(EYE)
    y = np.array([0, 2, 1])
    loss, stats = fused_gate_loss(h, w, torch.tensor(y), "nll", kernel="eager", ignore_index=2, return_stats=True)
    p = pick(softmax(Z), y)
    assert float(loss) == pytest.approx(-np.log(p[[0, 2]]).sum(), rel=1e-6)
    assert stats["mask"].tolist() == [True, False, True] and stats["num_tokens"] == 2


def test_a_chunk_size_below_one_is_refused():
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got 0.5"):
        fused_gate_loss(torch.tensor(Z), torch.tensor(EYE), torch.tensor(Y), "nll", kernel="eager", chunk_size=0.5)


def test_statistics_without_any_loss_token():
    """Every label ignored: loss 0, and every statistic (focus included for DEFT) is all zeros
    in the labels' shape, with num_tokens 0."""
    y = torch.full((2, 3), -100)
    loss, stats = fused_gate_loss(torch.tensor(np.stack([Z, Z])), torch.tensor(EYE), y, "deft", kernel="eager",
                                  return_stats=True)
    assert float(loss) == 0.0 and stats["num_tokens"] == 0
    for key in ("p", "gate", "entropy", "focus"):
        assert stats[key].shape == (2, 3) and torch.all(stats[key] == 0), key


@pytest.mark.parametrize("weight_dtype, bias_dtype", [(torch.bfloat16, torch.float32), (torch.float32, torch.bfloat16)])
def test_weight_and_bias_gradients_each_rounded_once_to_their_own_dtype(weight_dtype, bias_dtype):
    """257 tokens with logits (0, 0) and label 0 (nll): dL/dz = (-0.5, 0.5) per token, so
    dL/db = dL/dW (hidden states 1) = (-128.5, 128.5), exact in fp32 and 128 in bf16 (9 bits).
    Each gradient is accumulated in fp32 and rounded once, to its own parameter's dtype."""
    n = 257
    h = torch.ones(n, 1, dtype=weight_dtype)
    w = torch.zeros(2, 1, dtype=weight_dtype, requires_grad=True)
    b = torch.zeros(2, dtype=bias_dtype, requires_grad=True)
    loss = fused_gate_loss(h, w, torch.zeros(n, dtype=torch.long), "nll", kernel="eager", bias=b)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(n * np.log(2.0), rel=1e-6)
    assert b.grad.dtype == bias_dtype and w.grad.dtype == weight_dtype
    exact = torch.tensor([-128.5, 128.5])
    if bias_dtype == torch.float32:
        assert b.grad.tolist() == exact.tolist()
    if weight_dtype == torch.float32:
        assert w.grad[:, 0].tolist() == exact.tolist()
