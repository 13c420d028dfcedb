"""Helpers shared by test_fused_autodiff.py, test_fused_chunked.py, test_fused_compiled.py,
test_fused_frozen.py and test_fused_target.py."""

from __future__ import annotations

import torch

import deft
from deft.objectives import REGISTRY

ALL = list(REGISTRY)
GATE = [name for name in ALL if REGISTRY[name].kind == "gate"]
# (objective, impl) pairs of the engine tests: every objective eagerly, the gate ones also compiled
# (impl only changes the gate step; distribution and autograd objectives always run eagerly)
BY_IMPL = [(name, "eager") for name in ALL] + [(name, "compile") for name in GATE]


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


def run_fused(c, name, reduction="sum", chunk_size=8, bias=True, upstream=None, impl="eager", **kw):
    h = c["h"].clone().requires_grad_(True)
    w = c["w"].clone().requires_grad_(True)
    b = c["b"].clone().requires_grad_(True) if bias else None
    loss, stats = deft.fused_token_loss(
        h, w, c["y"], name, bias=b, reduction=reduction, chunk_size=chunk_size,
        ref_hidden=c["th"], ref_weight=c["tw"], teacher_hidden=c["th"], teacher_weight=c["tw"],
        old_logprobs=c["old"], return_stats=True, impl=impl, **kw)
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
