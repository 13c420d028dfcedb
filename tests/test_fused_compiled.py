"""The compiled per-chunk kernel of the gate path equals the eager engine (deft.fused.kernel).

The compiled functions do not depend on the objective (statistics pass, gradient pass), so they
are compiled once per dtype for the whole module; shapes are small and odd (prime V, partial
chunks, ignored labels). The eager engine (``deft.fused_token_loss``) is the oracle end to end,
``gate_chunk(kernel="eager")`` chunk by chunk, the fp64 plain loss for the bf16 error budget.
"""

import pytest
import torch

import deft
from deft.fused.kernel import fused_gate_loss, gate_chunk, gate_step, resolve_kernel

GATE = ["nll", "p", "dft", "power", "cayley", "cayley_floor", "deft", "eaft", "profit"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def chunk_inputs(rows=13, vocab=97, seed=0, dtype=torch.float32):
    """Logits ``[rows, V]`` with confident labels on half the rows and a masked (-inf) entry."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, vocab, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, vocab, (rows,), generator=g)
    y[1::2] = z[1::2].argmax(-1)
    z[1::2].scatter_add_(-1, y[1::2, None], torch.full((len(y[1::2]), 1), 6.0, dtype=torch.float64))
    z[0, (y[0] + 1) % vocab] = float("-inf")
    return z.to(dtype), y


def make_case(n=37, hidden=24, vocab=97, seed=0, dtype=torch.float32):
    """Hidden states, head, bias and labels: every third label ignored, half of the others the argmax."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g, dtype=torch.float64)
    w = torch.randn(vocab, hidden, generator=g, dtype=torch.float64) * 0.6
    b = torch.randn(vocab, generator=g, dtype=torch.float64) * 0.5
    y = torch.randint(0, vocab, (n,), generator=g)
    y[1::2] = (h @ w.T + b)[1::2].argmax(-1)
    y[::3] = -100
    tw = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return dict(h=h.to(dtype), w=w.to(dtype), b=b.to(dtype), y=y, tw=tw.float())


def run(fn, c, name, **kw):
    """Loss, gradients (hidden, weight, bias) and statistics of a fused loss on case ``c``."""
    h, w, b = (c[k].clone().requires_grad_(True) for k in ("h", "w", "b"))
    loss, stats = fn(h, w, c["y"], name, bias=b, reduction="sum", token_weights=c["tw"], return_stats=True, **kw)
    loss.backward()
    return loss.detach(), h.grad, w.grad, b.grad, stats


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", GATE)
def test_compiled_chunk_equals_eager_chunk(name, dtype):
    obj = deft.parse_objective(name)
    z, y = chunk_inputs(dtype=DTYPES[dtype])
    weights = torch.linspace(0.5, 1.5, z.shape[0])
    scale = torch.linspace(2.0, 0.25, z.shape[0])
    out = {}
    for kernel in ("eager", "compile"):
        out[kernel] = gate_chunk(obj, z, y, kernel=kernel, token_weights=weights, scale=scale,
                                 inputs={"batch_mean_p": torch.tensor(0.3)}, want_stats=True)
    (loss_e, g_e, st_e), (loss_c, g_c, st_c) = out["eager"], out["compile"]
    assert g_c.dtype == g_e.dtype == z.dtype and g_c.shape == z.shape
    # log p = z_y - lse: both ways of forming lse are exact to a few ulps of the logits' size
    atol = 8 * torch.finfo(torch.float32).eps * z.float()[z.isfinite()].abs().max().item()
    torch.testing.assert_close(loss_c, loss_e, rtol=2e-6, atol=atol)
    assert set(st_c) == set(st_e)
    # the engine's entropy lse - Σ P z cancels for peaked rows, and Cayley's focus α*(p) has slope
    # 1 / (2 √(1-p)) near p = 1 (one ulp of p moves it by 1e-5): compare those absolutely
    loose = {"entropy": 1e-5, "focus": 1e-4}
    for key in st_e:
        torch.testing.assert_close(st_c[key], st_e[key], rtol=2e-6, atol=max(atol, loose.get(key, 0.0)), msg=key)
    # fp32: a few ulps of coef = gate x scale (coef p - coef and coef (p - 1) round apart at the
    # label of a confident row); bf16: the same fp32 values rounded, at most one bf16 step apart
    rtol = 1e-5 if dtype == "fp32" else 2**-7
    atol = 4 * torch.finfo(torch.float32).eps * (st_e["gate"] * scale).abs().max().item()
    torch.testing.assert_close(g_c.float(), g_e.float(), rtol=rtol, atol=atol)
    # the gradient is coef (P - δ_y): each row sums to 0, and the masked entry gets none
    assert g_c.float().sum(-1).abs().max() < (1e-5 if dtype == "fp32" else 2e-2)
    assert g_c[0, (y[0] + 1) % z.shape[1]] == 0


@pytest.mark.parametrize("name", GATE)
def test_compiled_loss_equals_the_engine_fp32(name):
    """Partial chunks (37 rows, chunk 8, a third ignored: 24 loss tokens), prime V, bias, weights."""
    c = make_case()
    engine = run(deft.fused_token_loss, c, name, chunk_size=8)
    for kernel in ("eager", "compile"):
        out = run(fused_gate_loss, c, name, chunk_size=8, kernel=kernel)
        for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
            torch.testing.assert_close(out[i], engine[i], rtol=1e-5, atol=1e-6, msg=f"{kernel} {what}")
        assert set(out[4]) == set(engine[4])
        for key in ("p", "gate", "entropy", "focus", "mask"):
            if key in engine[4]:
                torch.testing.assert_close(out[4][key], engine[4][key], rtol=1e-5, atol=1e-6, msg=key)
        assert out[4]["num_tokens"] == engine[4]["num_tokens"] == 24


def assert_within_plain_bf16(ours, plain, truth, what, factor=2.0):
    """|ours - truth| <= factor * |plain bf16 - truth| (max norms): the plain bf16 path is the budget."""
    plain_err = (plain.double() - truth).abs().max().item()
    err = (ours.double() - truth).abs().max().item()
    assert err <= factor * plain_err + 1e-7, f"{what}: error {err:.3e}, plain bf16 error {plain_err:.3e}"


@pytest.mark.parametrize("name", ["nll", "p", "cayley", "deft", "eaft"])
def test_bf16_throughout_stays_within_the_plain_bf16_error(name):
    """bf16 logits chunk, fp32 statistics, bf16 g, fp32 dW accumulation over 5 chunks: the error
    against fp64 is at most twice the plain bf16 path's (logits, loss and autograd in bf16/fp32)."""
    c64, cb = make_case(dtype=torch.float64), make_case(dtype=torch.bfloat16)

    def plain(h, w, y, name, bias, **kw):
        return deft.token_loss(h @ w.T + bias, y, name, **kw)

    truth = run(plain, c64, name)
    reference = run(plain, cb, name)
    ours = run(fused_gate_loss, cb, name, chunk_size=5, kernel="compile")
    assert ours[1].dtype == ours[2].dtype == ours[3].dtype == torch.bfloat16
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        assert_within_plain_bf16(ours[i], reference[i], truth[i].double(), f"{name} {what}")


def test_bf16_chunk_gradient_is_written_in_bf16_from_fp32_statistics():
    """The statistics of a bf16 chunk equal those of the same values in fp32 (fp32 accumulation)."""
    obj = deft.parse_objective("deft")
    z, y = chunk_inputs(rows=9, vocab=1031, seed=3, dtype=torch.bfloat16)
    loss_b, g_b, st_b = gate_chunk(obj, z, y, kernel="compile", want_stats=True)
    loss_f, g_f, st_f = gate_chunk(obj, z.float(), y, kernel="compile", grad_dtype=torch.bfloat16, want_stats=True)
    assert g_b.dtype == torch.bfloat16
    torch.testing.assert_close(loss_b, loss_f, rtol=0, atol=0)
    torch.testing.assert_close(st_b["focus"], st_f["focus"], rtol=0, atol=0)
    torch.testing.assert_close(g_b, g_f, rtol=0, atol=0)


def test_engine_chunk_loop_with_the_compiled_gate_step(monkeypatch):
    """deft.fused_token_loss with DEFT_FUSED_KERNEL=compile (the engine's gate step is
    gate_step) gives the eager engine's results, selected-token normalisation included."""
    from deft.fused import chunked

    assert chunked.step_for("gate") is gate_step
    c = make_case(seed=5)
    names = ["nll", "deft", "eaft", "cayley_floor", "nll[p>=0.1]"]
    monkeypatch.setenv("DEFT_FUSED_KERNEL", "eager")
    want = {name: run(deft.fused_token_loss, c, name, chunk_size=8) for name in names}
    monkeypatch.setenv("DEFT_FUSED_KERNEL", "compile")
    for name in names:
        out = run(deft.fused_token_loss, c, name, chunk_size=8)
        for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
            torch.testing.assert_close(out[i], want[name][i], rtol=1e-5, atol=1e-6, msg=f"{name} {what}")
        for key in ("p", "gate", "entropy", "focus"):
            if key in want[name][4]:
                torch.testing.assert_close(out[4][key], want[name][4][key], rtol=1e-5, atol=1e-5, msg=key)
    h, w = c["h"].clone().requires_grad_(True), c["w"].clone().requires_grad_(True)
    loss = deft.fused_token_loss(h, w, c["y"], "nll[p>=0.1]", reduction="mean", chunk_size=8)
    ref = deft.token_loss(c["h"] @ c["w"].T, c["y"], "nll[p>=0.1]", reduction="mean")
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-6)


def test_a_kernel_that_fails_to_compile_falls_back_to_eager(monkeypatch):
    from deft.fused import kernel

    def broken(name):
        raise RuntimeError("no compiler here")

    c = make_case(seed=6)
    monkeypatch.setenv("DEFT_FUSED_KERNEL", "eager")
    want = run(deft.fused_token_loss, c, "deft", chunk_size=8)
    monkeypatch.setattr(kernel, "_compiled", broken)
    monkeypatch.setattr(kernel, "_FAILED", [])
    with pytest.raises(RuntimeError, match="no compiler here"):  # asked for explicitly: the error stands
        monkeypatch.setenv("DEFT_FUSED_KERNEL", "compile")
        run(deft.fused_token_loss, c, "deft", chunk_size=8)
    monkeypatch.setenv("DEFT_FUSED_KERNEL", "auto")
    monkeypatch.setattr(kernel, "resolve_kernel", lambda kernel_, device: "compile")  # as on a CUDA device
    with pytest.warns(RuntimeWarning, match="using the eager engine"):
        out = run(deft.fused_token_loss, c, "deft", chunk_size=8)
    for a, b in zip(out[:4], want[:4]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(kernel._FAILED) == 1


def test_kernel_switch_and_errors(monkeypatch):
    monkeypatch.delenv("DEFT_FUSED_KERNEL", raising=False)
    assert resolve_kernel("auto", "cpu") == "eager" and resolve_kernel(None, "cpu") == "eager"
    monkeypatch.setenv("DEFT_FUSED_KERNEL", "compile")
    assert resolve_kernel(None, "cpu") == "compile" and resolve_kernel("eager", "cuda") == "eager"
    assert resolve_kernel("auto", "cuda") == "compile" and resolve_kernel("compile", "cpu") == "compile"
    with pytest.raises(ValueError, match="kernel must be one of"):
        resolve_kernel("triton", "cpu")
    c = make_case()
    with pytest.raises(ValueError, match="gate objectives.*fused_token_loss"):
        fused_gate_loss(c["h"], c["w"], c["y"], "kd")
    with pytest.raises(ValueError, match="gate objectives"):
        fused_gate_loss(c["h"], c["w"], c["y"], "nll", reduction="none")
    with pytest.raises(ValueError, match="needs old-policy"):
        fused_gate_loss(c["h"], c["w"], c["y"], "psft")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fused_gate_loss(c["h"], c["w"], c["y"].clamp_min(0) + 97, "nll")


def test_mean_reduction_upstream_scale_and_no_loss_tokens():
    c = make_case(seed=4)
    for reduction in ("mean", "sum"):
        outs = []
        for fn in (deft.fused_token_loss, fused_gate_loss):
            h, w = c["h"].clone().requires_grad_(True), c["w"].clone().requires_grad_(True)
            loss = fn(h, w, c["y"], "deft", reduction=reduction, chunk_size=7)
            (3.0 * loss).backward()
            outs.append((loss.detach(), h.grad, w.grad))
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    h, w = c["h"].clone().requires_grad_(True), c["w"].clone().requires_grad_(True)
    loss = fused_gate_loss(h, w, torch.full_like(c["y"], -100), "deft", kernel="compile")
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(h.grad == 0) and torch.all(w.grad == 0)
