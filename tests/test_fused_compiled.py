"""The compiled gate step (``impl="compile"``, deft.fused.compiled) equals the eager one, in the
one engine (``deft.fused_token_loss``), and the choice of implementation.

The compiled functions do not depend on the objective (statistics pass, gradient pass), so they
are compiled once per dtype for the whole module; shapes are small and odd (prime V, partial
chunks, ignored labels, a bias, token weights). The eager step is the oracle end to end, the
fp64 plain loss for the bf16 error budget.
"""

import inspect
import warnings

import pytest
import torch

import deft
from deft.fused import compiled
from deft.fused.compiled import resolve_impl

from fused_chunked_helpers import GATE, make_case as helpers_case

GRADS = ("loss", "dhidden", "dweight", "dbias")


def make_case(seed=0, dtype=torch.float32):
    """37 rows, H 24, prime V 97, a bias; every third label ignored, half of the others the argmax."""
    c = helpers_case(seed=seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 100)
    c["weights"] = torch.rand(37, generator=g) + 0.5
    return c


def run(c, name, impl, plain=False, **kw):
    """Loss, gradients (hidden, weight, bias) and statistics on case ``c``, summed."""
    h, w, b = (c[k].clone().requires_grad_(True) for k in ("h", "w", "b"))
    if plain:
        loss, stats = deft.token_loss(h @ w.T + b, c["y"], name, reduction="sum", token_weights=c["weights"],
                                      old_logprobs=c["old"], return_stats=True)
    else:
        loss, stats = deft.fused_token_loss(h, w, c["y"], name, bias=b, reduction="sum", token_weights=c["weights"],
                                            old_logprobs=c["old"], return_stats=True, impl=impl, **kw)
    loss.backward()
    return loss.detach(), h.grad, w.grad, b.grad, stats


@pytest.mark.parametrize("name", GATE)
def test_compiled_step_equals_the_eager_one_fp32(name):
    """Partial chunks (24 loss tokens in chunks of 8 and 5), prime V, bias, token weights: loss,
    gradients and statistics within a few fp32 ulps of the eager step."""
    c = make_case()
    for chunk_size in (8, 5):
        eager = run(c, name, "eager", chunk_size=chunk_size)
        out = run(c, name, "compile", chunk_size=chunk_size)
        for i, what in enumerate(GRADS):
            torch.testing.assert_close(out[i], eager[i], rtol=1e-5, atol=1e-6, msg=f"{name} {what}")
        assert set(out[4]) == set(eager[4])
        # the eager entropy is -Σ P log P, the compiled one log S1 - Sz / S1: they differ by cancellation
        for key in ("p", "gate", "entropy", "focus", "mask"):
            if key in eager[4]:
                torch.testing.assert_close(out[4][key], eager[4][key], rtol=1e-5, atol=1e-5, msg=key)
        assert out[4]["num_tokens"] == eager[4]["num_tokens"] == 24


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
    truth = run(c64, name, None, plain=True)
    reference = run(cb, name, None, plain=True)
    ours = run(cb, name, "compile", chunk_size=5)
    assert ours[1].dtype == ours[2].dtype == ours[3].dtype == torch.bfloat16
    for i, what in enumerate(GRADS):
        assert_within_plain_bf16(ours[i], reference[i], truth[i].double(), f"{name} {what}")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mean_reduction_and_upstream_scale(reduction):
    c = make_case(seed=4)
    outs = []
    for impl in ("eager", "compile"):
        h, w = c["h"].clone().requires_grad_(True), c["w"].clone().requires_grad_(True)
        loss = deft.fused_token_loss(h, w, c["y"], "deft", reduction=reduction, chunk_size=7, impl=impl)
        (3.0 * loss).backward()
        outs.append((loss.detach(), h.grad, w.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_selected_normaliser_and_no_loss_tokens():
    """``nll[p>=0.1]`` and ``OnlyTopLogP-0.1`` (mean over the selected tokens) equal the plain engine
    compiled; every label ignored gives loss 0 and zero gradients."""
    c = make_case(seed=5)
    for spec in ("nll[p>=0.1]", "OnlyTopLogP-0.1"):
        h, w = c["h"].clone().requires_grad_(True), c["w"].clone().requires_grad_(True)
        loss = deft.fused_token_loss(h, w, c["y"], spec, reduction="mean", chunk_size=8, impl="compile")
        loss.backward()
        hp, wp = c["h"].clone().requires_grad_(True), c["w"].clone().requires_grad_(True)
        ref = deft.token_loss(hp @ wp.T, c["y"], spec, reduction="mean")
        ref.backward()
        for a, b in ((loss.detach(), ref.detach()), (h.grad, hp.grad), (w.grad, wp.grad)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    h, w = c["h"].clone().requires_grad_(True), c["w"].clone().requires_grad_(True)
    loss = deft.fused_token_loss(h, w, torch.full_like(c["y"], -100), "deft", impl="compile")
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(h.grad == 0) and torch.all(w.grad == 0)


def test_a_step_that_fails_to_compile(monkeypatch):
    """Named explicitly, the compiler's error stands; under "auto" (on a device where auto
    compiles) it is reported once, the eager step gives the result, and auto stays eager."""
    def broken(name):
        raise RuntimeError("no compiler here\nsecond line")

    c = make_case(seed=6)
    want = run(c, "deft", "eager", chunk_size=8)
    monkeypatch.setattr(compiled, "compiled", broken)
    monkeypatch.setattr(compiled, "FAILED", [])
    with pytest.raises(RuntimeError, match="no compiler here"):
        run(c, "deft", "compile", chunk_size=8)
    monkeypatch.setitem(compiled.AUTO, "cpu", "compile")  # as on a CUDA device
    assert resolve_impl("auto", "cpu") == "compile"
    with pytest.warns(RuntimeWarning, match=r"step failed \(RuntimeError: no compiler here\); using the eager"):
        out = run(c, "deft", "auto", chunk_size=8)
    for a, b in zip(out[:4], want[:4]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(compiled.FAILED) == 1 and resolve_impl("auto", "cpu") == "eager"


def test_the_fallback_report_names_the_callers_line(monkeypatch):
    """The warning of a step that failed to compile under "auto" points at the line that called
    ``fused_token_loss`` (the caller's code), not at a line inside deft."""
    def broken(name):
        raise RuntimeError("no compiler here")

    c = make_case(seed=7)
    monkeypatch.setattr(compiled, "compiled", broken)
    monkeypatch.setattr(compiled, "FAILED", [])
    monkeypatch.setitem(compiled.AUTO, "cpu", "compile")  # as on a CUDA device
    h = c["h"].clone().requires_grad_(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        deft.fused_token_loss(h, c["w"], c["y"], "deft", bias=c["b"], chunk_size=8, impl="auto").backward()
    reports = [(w.filename, w.lineno) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert reports == [(__file__, line)]


def test_impl_choice_and_errors(monkeypatch):
    monkeypatch.delenv(compiled.IMPL_ENV, raising=False)
    monkeypatch.setattr(compiled, "FAILED", [])
    assert resolve_impl(None, "cpu") == "eager" and resolve_impl("auto", "cpu") == "eager"
    assert resolve_impl("auto", "cuda") == "compile" and resolve_impl("eager", "cuda") == "eager"
    monkeypatch.setenv(compiled.IMPL_ENV, "compile")
    assert resolve_impl(None, "cpu") == "compile" and resolve_impl("eager", "cpu") == "eager"
    with pytest.raises(ValueError, match="impl must be one of eager, compile, auto, got 'triton'"):
        resolve_impl("triton", "cpu")
    c = make_case()
    with pytest.raises(ValueError, match="impl must be one of"):
        deft.fused_token_loss(c["h"], c["w"], c["y"], "nll", impl="fast")
    # distribution objectives have no compiled step: impl does not change them
    kw = dict(teacher_hidden=c["th"], teacher_weight=c["tw"], chunk_size=8)
    assert torch.equal(deft.fused_token_loss(c["h"], c["w"], c["y"], "kd", impl="compile", **kw),
                       deft.fused_token_loss(c["h"], c["w"], c["y"], "kd", impl="eager", **kw))
