"""The fused chunked loss equals the plain full-logits loss for every objective.

Tolerances are anchored to what the plain fp32 path achieves: the plain loss in fp64 is the
truth, and the fused fp32 result may differ from it by at most a small multiple of the plain
fp32 error (plus a floor at fp32 resolution). The engine tests run with each implementation of
the gate step (``impl="eager"`` and ``"compile"``)."""

import pytest
import torch

import deft

from fused_chunked_helpers import BY_IMPL, assert_anchored, make_case, run_fused, run_plain


@pytest.mark.parametrize("name,impl", BY_IMPL)
def test_fused_equals_plain_for_every_objective(name, impl):
    c64 = make_case(dtype=torch.float64)
    c32 = make_case(dtype=torch.float32)
    truth = run_plain(c64, name)
    plain = run_plain(c32, name)
    fused = run_fused(c32, name, impl=impl)
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        assert_anchored(fused[i], plain[i], truth[i].double(), f"{name} {what}")
    for key in ("p", "gate", "entropy", "focus"):
        assert (key in fused[4]) == (key in plain[4]), key
        if key in plain[4]:
            torch.testing.assert_close(fused[4][key], plain[4][key], rtol=1e-4, atol=1e-5)
    assert fused[4]["num_tokens"] == plain[4]["num_tokens"] == int((c32["y"] != -100).sum())


@pytest.mark.parametrize("name,impl", [("deft", "eager"), ("cayley_floor", "eager"), ("eaft", "eager"), ("kd", "eager"),
                                       ("label_smoothing", "eager"), ("deft", "compile"), ("cayley_floor", "compile")])
@pytest.mark.parametrize("chunk_size", [1, 5, 37, 1000, None])
def test_chunk_size_does_not_change_the_result(name, impl, chunk_size):
    c = make_case(n=37, vocab=61, seed=1)
    ref = run_fused(c, name, chunk_size=37, impl=impl)
    out = run_fused(c, name, chunk_size=chunk_size, impl=impl)
    for a, b in zip(out[:4], ref[:4]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,impl", [("nll", "eager"), ("deft", "eager"), ("psft", "eager"), ("gem", "eager"),
                                       ("target_sft", "eager"), ("deft", "compile"), ("psft", "compile")])
def test_reduction_none_with_per_token_upstream_gradient(name, impl):
    """reduction='none' recomputes the chunks in backward with the per-token upstream gradient."""
    c64, c32 = make_case(seed=2, dtype=torch.float64), make_case(seed=2)
    up = torch.rand(37, dtype=torch.float64) * 2 - 0.5
    truth = run_plain(c64, name, reduction="none", upstream=up)
    plain = run_plain(c32, name, reduction="none", upstream=up.float())
    fused = run_fused(c32, name, reduction="none", upstream=up.float(), impl=impl)
    assert fused[0].shape == (37,) and torch.all(fused[0][c32["y"] == -100] == 0)
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        assert_anchored(fused[i], plain[i], truth[i].double(), f"{name} {what}")


@pytest.mark.parametrize("name,impl", [("nll", "eager"), ("deft", "eager"), ("kd", "eager"), ("deft", "compile")])
def test_mean_reduction_and_upstream_scale(name, impl):
    c = make_case(seed=3)
    fused = run_fused(c, name, reduction="mean", upstream=torch.tensor(3.0), impl=impl)
    plain = run_plain(c, name, reduction="mean", upstream=torch.tensor(3.0))
    for a, b in zip(fused[:4], plain[:4]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_non_contiguous_teacher_hidden_states():
    """``teacher_hidden[:, :-1]`` of a batch (what the model wrapper passes) gives the result of
    its contiguous copy."""
    c = make_case(n=40, seed=15)
    h3, y3 = c["h"].reshape(4, 10, -1), c["y"].reshape(4, 10)
    t3 = torch.randn(4, 11, c["h"].shape[1], generator=torch.Generator().manual_seed(0))
    view = t3[:, :-1]
    assert not view.is_contiguous()
    for name in ("kd", "gem", "kd_hybrid"):
        outs = [deft.fused_token_loss(h3, c["w"], y3, name, teacher_hidden=t, teacher_weight=c["tw"],
                                      reduction="none", chunk_size=7) for t in (view, view.contiguous())]
        torch.testing.assert_close(outs[0], outs[1])


def test_many_ignored_tokens_and_no_bias():
    c = make_case(n=64, seed=4, ignore_every=0)
    c["y"][torch.arange(64) % 7 != 0] = -100  # 10 loss tokens of 64
    for name in ("deft", "sft_kl"):
        fused = run_fused(c, name, bias=False, chunk_size=3)
        plain = run_plain(c, name, bias=False)
        for a, b in zip(fused[:3], plain[:3]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert torch.all(fused[1][c["y"] == -100] == 0)  # ignored rows get no hidden gradient


@pytest.mark.parametrize("name,impl", BY_IMPL)
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_all_tokens_ignored(name, impl, reduction):
    c = make_case(n=9, seed=5)
    c["y"][:] = -100
    loss, dh, dw, db, stats = run_fused(c, name, reduction=reduction, impl=impl)
    assert torch.all(loss == 0) and stats["num_tokens"] == 0
    for g in (dh, dw, db):
        assert g is not None and torch.all(g == 0) and torch.isfinite(g).all()
    plain_stats = run_plain(c, name, reduction=reduction)[4]
    assert set(stats) == set(plain_stats)  # the trainer's statistics need every key, even here
    assert all(torch.all(stats[key] == 0) for key in ("p", "gate", "entropy"))


@pytest.mark.parametrize("name", ["nll", "p", "deft", "cayley", "eaft", "kd", "label_smoothing", "psft"])
def test_bf16_inputs_match_the_plain_bf16_path(name):
    """bf16 hidden/weight: both paths multiply in bf16 and compute the loss in fp32 (the eager
    step; the compiled one keeps bf16 logits, test_fused_compiled.py); the error budget is
    anchored to the plain bf16 path's own error against fp64."""
    c64 = make_case(seed=6, dtype=torch.float64)
    cb = make_case(seed=6, dtype=torch.bfloat16)
    truth = run_plain(c64, name)
    plain = run_plain(cb, name)
    fused = run_fused(cb, name)
    assert fused[1].dtype == torch.bfloat16 and fused[2].dtype == torch.bfloat16
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        assert_anchored(fused[i], plain[i], truth[i].double(), f"bf16 {name} {what}", factor=3.0, floor=1e-2)


def test_hidden_may_have_batch_dimensions():
    c = make_case(n=36, seed=7)
    h3, y3 = c["h"].reshape(4, 9, -1), c["y"].reshape(4, 9)
    out = deft.fused_token_loss(h3, c["w"], y3, "deft", reduction="none")
    assert out.shape == (4, 9)
    flat = deft.fused_token_loss(c["h"], c["w"], c["y"], "deft", reduction="none")
    torch.testing.assert_close(out.reshape(-1), flat)


def test_no_grad_mode_computes_loss_only():
    c = make_case(seed=8)
    h = c["h"].clone().requires_grad_(True)
    with torch.no_grad():
        loss = deft.fused_token_loss(h, c["w"], c["y"], "deft", bias=c["b"])
    torch.testing.assert_close(loss, run_plain(c, "deft")[0])


@pytest.mark.parametrize("kwargs,match", [
    (dict(objective="kd", teacher_hidden=torch.zeros(37, 24), teacher_weight=torch.zeros(96, 24)), "vocabulary"),
    (dict(objective="kd"), "teacher model.*teacher_hidden"),
    (dict(objective="deft", reduction="avg"), "reduction"),
    (dict(objective="deft", chunk_size=-1), "chunk_size"),
    (dict(objective="deft", bias=torch.zeros(3)), "bias"),
    (dict(objective="deft", impl="triton"), "impl must be one of eager, compile, auto"),
])
def test_fused_input_errors(kwargs, match):
    c = make_case()
    with pytest.raises(ValueError, match=match):
        deft.fused_token_loss(c["h"], c["w"], c["y"], **kwargs)


# ------------------------------------- dW += g^T h with bf16/fp16 operands (accumulate_weight_grad)
@pytest.mark.parametrize("device,version,asked", [
    ("cuda", (2, 12), True), ("cuda", (2, 13), True), ("cuda", (3, 0), True),
    ("cuda", (2, 11), False), ("cuda", (1, 13), False),
    ("cpu", (2, 12), False), ("cpu", (3, 0), False), ("meta", (2, 13), False), ("xpu", (2, 13), False),
])
def test_the_fp32_output_gemm_is_asked_for_on_cuda_from_torch_2_12(device, version, asked):
    """The rule of the weight gradient's GEMM: CUDA with torch >= 2.12 (the first release whose
    out_dtype GEMM takes ``out=``); every other device and every earlier torch: no such GEMM."""
    from deft.fused.chunked import _fp32_out_gemm

    assert _fp32_out_gemm(torch.device(device), version) is asked


def test_a_missing_fp32_output_gemm_falls_back_to_the_temporary_product(monkeypatch):
    """Where the fp32-output GEMM is asked for but missing, ``dW += g^T h`` goes through the
    temporary product instead: the CPU has no such kernel (NotImplementedError, a RuntimeError),
    and a build before its ``out=`` form rejects the arguments (TypeError; stood for here by an
    ``addmm`` with that earlier signature, as this torch has the later one)."""
    from deft.fused.chunked import _add_low_precision_product

    gen = torch.Generator().manual_seed(0)
    g = torch.randn(6, 5, generator=gen).bfloat16()
    h = torch.randn(6, 3, generator=gen).bfloat16()
    start = torch.randn(5, 3, generator=gen)
    want = start.clone()
    _add_low_precision_product(want, g, h, fp32_out=False)
    torch.testing.assert_close(want.double(), start.double() + g.double().T @ h.double(), rtol=1e-2, atol=1e-2)

    dw = start.clone()
    _add_low_precision_product(dw, g, h, fp32_out=True)  # the CPU's refusal
    assert torch.equal(dw, want)

    addmm = torch.addmm

    def addmm_without_out_dtype(input, mat1, mat2, *, beta=1, alpha=1, out=None):
        return addmm(input, mat1, mat2, beta=beta, alpha=alpha, out=out)

    monkeypatch.setattr(torch, "addmm", addmm_without_out_dtype)
    dw = start.clone()
    _add_low_precision_product(dw, g, h, fp32_out=True)
    assert torch.equal(dw, want)


def test_the_cpu_is_never_asked_for_an_fp32_output_gemm():
    """bf16 on a CPU: each chunk's ``dW`` share goes straight through the temporary product, without
    first calling a GEMM the CPU lacks (a failed call and its exception per chunk)."""
    from torch.overrides import TorchFunctionMode

    class OutDtypeCalls(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.count = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            self.count += "out_dtype" in kwargs
            return func(*args, **kwargs)

    c = make_case(seed=6, dtype=torch.bfloat16)
    w = c["w"].clone().requires_grad_(True)
    with OutDtypeCalls() as calls:
        deft.fused_token_loss(c["h"], w, c["y"], "nll", chunk_size=8).backward()
    assert calls.count == 0
    want = w.detach().clone().requires_grad_(True)
    deft.token_loss(c["h"] @ want.T, c["y"], "nll", reduction="sum").backward()
    torch.testing.assert_close(w.grad.double(), want.grad.double(), rtol=5e-2, atol=5e-2)
