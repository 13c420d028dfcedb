"""The fused chunked loss equals the plain full-logits loss for every objective.

Tolerances are anchored to what the plain fp32 path achieves: the plain loss in fp64 is the
truth, and the fused fp32 result may differ from it by at most a small multiple of the plain
fp32 error (plus a floor at fp32 resolution).
"""

import math

import pytest
import torch

import deft
from deft.fused import auto_chunk_size, sub_block_rows
from deft.objectives import REGISTRY

ALL = list(REGISTRY)


def make_case(n=37, hidden=24, vocab=97, seed=0, ignore_every=3, dtype=torch.float32):
    """Odd shapes: N not a multiple of the chunk, prime V, some ignored positions."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g, dtype=torch.float64)
    w = torch.randn(vocab, hidden, generator=g, dtype=torch.float64) * 0.6
    b = torch.randn(vocab, generator=g, dtype=torch.float64) * 0.5
    logits = h @ w.T + b
    y = torch.randint(0, vocab, (n,), generator=g)
    y[1::2] = logits[1::2].argmax(-1)  # confident tokens as well as unlikely ones
    if ignore_every:
        y[::ignore_every] = -100
    th = h + 0.5 * torch.randn(n, hidden, generator=g, dtype=torch.float64)
    tw = w + 0.1 * torch.randn(vocab, hidden, generator=g, dtype=torch.float64)
    old = torch.log_softmax(logits + torch.randn(n, vocab, generator=g, dtype=torch.float64), -1)
    old = old.gather(-1, y.clamp_min(0)[:, None])[:, 0]
    return dict(h=h.to(dtype), w=w.to(dtype), b=b.to(dtype), y=y, th=th.to(dtype), tw=tw.to(dtype),
                old=old.to(dtype))


def run_fused(c, name, reduction="sum", chunk_size=8, bias=True, upstream=None, **kw):
    h = c["h"].clone().requires_grad_(True)
    w = c["w"].clone().requires_grad_(True)
    b = c["b"].clone().requires_grad_(True) if bias else None
    loss, stats = deft.fused_token_loss(
        h, w, c["y"], name, bias=b, reduction=reduction, chunk_size=chunk_size,
        ref_hidden=c["th"], ref_weight=c["tw"], teacher_hidden=c["th"], teacher_weight=c["tw"],
        old_logprobs=c["old"], return_stats=True, **kw)
    (loss * upstream).sum().backward() if upstream is not None else loss.sum().backward()
    return loss.detach(), h.grad, w.grad, (b.grad if bias else None), stats


def run_plain(c, name, reduction="sum", bias=True, upstream=None, dtype=None, **kw):
    cast = (lambda t: t.to(dtype)) if dtype else (lambda t: t)
    h = cast(c["h"]).clone().requires_grad_(True)
    w = cast(c["w"]).clone().requires_grad_(True)
    b = cast(c["b"]).clone().requires_grad_(True) if bias else None
    logits = h @ w.T + (b if bias else 0)
    teacher = cast(c["th"]) @ cast(c["tw"]).T
    loss, stats = deft.token_loss(logits, c["y"], name, reduction=reduction, ref_logits=teacher,
                                  teacher_logits=teacher, old_logprobs=cast(c["old"]), return_stats=True, **kw)
    (loss * upstream).sum().backward() if upstream is not None else loss.sum().backward()
    return loss.detach(), h.grad, w.grad, (b.grad if bias else None), stats


def assert_anchored(fused, plain32, truth, what, factor=8.0, floor=1e-6):
    """|fused - truth| <= factor * |plain32 - truth| + floor * scale, elementwise-max norms."""
    scale = truth.abs().max().item() + 1e-30
    plain_err = (plain32.double() - truth).abs().max().item()
    err = (fused.double() - truth).abs().max().item()
    assert err <= factor * plain_err + floor * scale, f"{what}: fused error {err:.3e}, plain fp32 error {plain_err:.3e}"


@pytest.mark.parametrize("name", ALL)
def test_fused_equals_plain_for_every_objective(name):
    c64 = make_case(dtype=torch.float64)
    c32 = make_case(dtype=torch.float32)
    truth = run_plain(c64, name)
    plain = run_plain(c32, name)
    fused = run_fused(c32, name)
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        assert_anchored(fused[i], plain[i], truth[i].double(), f"{name} {what}")
    for key in ("p", "gate", "entropy", "focus"):
        assert (key in fused[4]) == (key in plain[4]), key
        if key in plain[4]:
            torch.testing.assert_close(fused[4][key], plain[4][key], rtol=1e-4, atol=1e-5)
    assert fused[4]["num_tokens"] == plain[4]["num_tokens"] == int((c32["y"] != -100).sum())


@pytest.mark.parametrize("name", ["deft", "cayley_floor", "eaft", "kd", "label_smoothing"])
@pytest.mark.parametrize("chunk_size", [1, 5, 37, 1000, None])
def test_chunk_size_does_not_change_the_result(name, chunk_size):
    c = make_case(n=37, vocab=61, seed=1)
    ref = run_fused(c, name, chunk_size=37)
    out = run_fused(c, name, chunk_size=chunk_size)
    for a, b in zip(out[:4], ref[:4]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["nll", "deft", "psft", "gem", "target_sft"])
def test_reduction_none_with_per_token_upstream_gradient(name):
    """reduction='none' recomputes the chunks in backward with the per-token upstream gradient."""
    c64, c32 = make_case(seed=2, dtype=torch.float64), make_case(seed=2)
    up = torch.rand(37, dtype=torch.float64) * 2 - 0.5
    truth = run_plain(c64, name, reduction="none", upstream=up)
    plain = run_plain(c32, name, reduction="none", upstream=up.float())
    fused = run_fused(c32, name, reduction="none", upstream=up.float())
    assert fused[0].shape == (37,) and torch.all(fused[0][c32["y"] == -100] == 0)
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        assert_anchored(fused[i], plain[i], truth[i].double(), f"{name} {what}")


@pytest.mark.parametrize("name", ["nll", "deft", "kd"])
def test_mean_reduction_and_upstream_scale(name):
    c = make_case(seed=3)
    fused = run_fused(c, name, reduction="mean", upstream=torch.tensor(3.0))
    plain = run_plain(c, name, reduction="mean", upstream=torch.tensor(3.0))
    for a, b in zip(fused[:4], plain[:4]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


DISTRIBUTION = [name for name in ALL if REGISTRY[name].kind == "distribution"]


@pytest.mark.parametrize("name", DISTRIBUTION)
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_distribution_sub_blocks_equal_the_plain_path(name, reduction):
    """A chunk of 90 rows is differentiated in 16-row sub-blocks with a partial last one;
    losses, gradients and statistics are those of the plain path."""
    assert sub_block_rows(90) == 16 and sub_block_rows(7) == 7 and sub_block_rows(4096) == 256
    assert_sub_blocks_match_plain(name, reduction, seed=11)


def assert_sub_blocks_match_plain(name, reduction, seed):
    """Fused with 90-row chunks (16-row sub-blocks, a partial last one) against the plain path
    on 181 tokens; returns the fp64 plain result and its case."""
    c64 = make_case(n=181, seed=seed, dtype=torch.float64)
    c32 = make_case(n=181, seed=seed)
    up = None if reduction == "sum" else torch.rand(181, dtype=torch.float64) + 0.5
    truth = run_plain(c64, name, reduction=reduction, upstream=up)
    plain = run_plain(c32, name, reduction=reduction, upstream=None if up is None else up.float())
    fused = run_fused(c32, name, reduction=reduction, chunk_size=90, upstream=None if up is None else up.float())
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        assert_anchored(fused[i], plain[i], truth[i].double(), f"{name} {what}")
    for key in ("p", "gate", "entropy"):
        torch.testing.assert_close(fused[4][key], plain[4][key], rtol=1e-4, atol=1e-5)
    return truth, c64


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


@pytest.fixture
def custom_target():
    """Register distribution objectives for one test; removed afterwards."""
    from deft.objectives import register

    names = []

    def make(name, fn):
        register(name, "distribution", "test only", needs=("teacher",))(fn)
        names.append(name)
        return name

    yield make
    for name in names:
        REGISTRY.pop(name)


def test_targets_that_alias_the_workspace_or_are_not_normalised(custom_target):
    """Target fields that are views of the teacher's log-probabilities (which the engine
    exponentiates in place), and a target of mass 2, give the plain path's loss and gradients."""
    from deft.objectives import Target

    aliased = custom_target("test_aliased", lambda d: Target(label=d.teacher_logP[:, 0].exp(), uniform=0.5,
                                                             dists=((d.teacher_logP[:, 1].exp(), d.teacher_logP),)))
    heavy = custom_target("test_mass_two", lambda d: Target(label=0.5, dists=((1.0, d.teacher_logP + math.log(2.0)),)))
    c = make_case(n=181, seed=13)
    for name in (aliased, heavy):
        fused, plain = run_fused(c, name, chunk_size=90), run_plain(c, name)
        for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
            torch.testing.assert_close(fused[i], plain[i], rtol=1e-4, atol=1e-5, msg=f"{name} {what}")
        torch.testing.assert_close(fused[4]["gate"], plain[4]["gate"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gem", "target_sft", "sft_kl", "kd_hybrid", "asft"])
def test_masked_vocabulary_entries_give_finite_losses(name):
    """Logits of -inf (a masked vocabulary entry, never a label): 0 log 0 = 0. Masked in the
    model only, GEM's and Target-SFT's losses are finite and fused equals plain; masked in the
    model and the reference / teacher, the loss equals the loss over the vocabulary without
    those entries."""
    c = make_case(n=37, seed=14)
    masked = torch.tensor([3, 50, 96])
    c["y"][torch.isin(c["y"], masked)] = 5
    c["b"][masked] = -float("inf")
    if name in ("gem", "target_sft"):  # their targets vanish where the model's logit is -inf
        fused, plain = run_fused(c, name), run_plain(c, name)
        assert torch.isfinite(fused[0]).all() and torch.isfinite(plain[0]).all()
        for a, b in zip(fused[:4], plain[:4]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # plain path with -inf in both model and reference/teacher logits, against the restricted vocabulary
    keep = torch.ones(c["w"].shape[0], dtype=torch.bool)
    keep[masked] = False
    logits = c["h"] @ c["w"].T + c["b"]
    other = c["th"] @ c["tw"].T
    other_masked = other.masked_fill(~keep, -float("inf"))
    y = c["y"]
    y_small = torch.where(y == -100, y, keep.long().cumsum(0)[y.clamp_min(0)] - 1)
    full = deft.token_loss(logits, y, name, reduction="sum", ref_logits=other_masked, teacher_logits=other_masked)
    small = deft.token_loss(logits[:, keep], y_small, name, reduction="sum", ref_logits=other[:, keep],
                            teacher_logits=other[:, keep])
    torch.testing.assert_close(full, small, rtol=1e-5, atol=1e-5)


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


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_all_tokens_ignored(name, reduction):
    c = make_case(n=9, seed=5)
    c["y"][:] = -100
    loss, dh, dw, db, stats = run_fused(c, name, reduction=reduction)
    assert torch.all(loss == 0) and stats["num_tokens"] == 0
    for g in (dh, dw, db):
        assert g is not None and torch.all(g == 0) and torch.isfinite(g).all()
    plain_stats = run_plain(c, name, reduction=reduction)[4]
    assert set(stats) == set(plain_stats)  # the trainer's statistics need every key, even here
    assert all(torch.all(stats[key] == 0) for key in ("p", "gate", "entropy"))


@pytest.mark.parametrize("name", ["nll", "p", "deft", "cayley", "eaft", "kd", "label_smoothing", "psft"])
def test_bf16_inputs_match_the_plain_bf16_path(name):
    """bf16 hidden/weight: both paths multiply in bf16 and compute the loss in fp32; the error
    budget is anchored to the plain bf16 path's own error against fp64."""
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


def test_auto_chunk_size_bounds():
    assert auto_chunk_size(5, 64, 1000) == 5  # never more rows than tokens
    rows = auto_chunk_size(4096, 576, 49152)
    assert 16 <= rows <= 4096 and rows * 49152 * 4 <= 512 << 20
    rows = auto_chunk_size(100000, 1536, 151936)
    assert rows * 151936 * 4 <= 512 << 20


@pytest.mark.parametrize("kwargs,match", [
    (dict(objective="kd", teacher_hidden=torch.zeros(37, 24), teacher_weight=torch.zeros(96, 24)), "vocabulary"),
    (dict(objective="kd"), "teacher model.*teacher_hidden"),
    (dict(objective="deft", reduction="avg"), "reduction"),
    (dict(objective="deft", chunk_size=-1), "chunk_size"),
    (dict(objective="deft", bias=torch.zeros(3)), "bias"),
])
def test_fused_input_errors(kwargs, match):
    c = make_case()
    with pytest.raises(ValueError, match=match):
        deft.fused_token_loss(c["h"], c["w"], c["y"], **kwargs)
