"""Tests of deft.fused.target: distribution objectives on one row sub-block, with their closed-form
gradient."""

import math

import pytest
import torch

import deft
from deft.objectives import REGISTRY

from fused_chunked_helpers import make_case, run_fused, run_plain


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


def test_a_small_weight_target_that_is_not_normalised_is_corrected(custom_target):
    """A target term of weight 1e-3 and mass 1.9 (no label term, so it is the whole gradient): its
    excess mass (0.9e-3 per row, below any fixed threshold) is corrected like a large one."""
    from deft.objectives import Target

    small = custom_target("test_small_heavy",
                          lambda d: Target(label=0.0, dists=((1e-3, d.teacher_logP + math.log(1.9)),)))
    c = make_case(n=97, seed=5)
    fused, plain = run_fused(c, small, chunk_size=40), run_plain(c, small)
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        torch.testing.assert_close(fused[i], plain[i], rtol=1e-4, atol=1e-7, msg=f"{what}")


def test_an_excess_just_above_rounding_relative_to_its_weight_is_corrected(custom_target):
    """Weight 0.5, mass 1.0015: the excess (7.5e-4 per row) is 1.5e-3 of the weight, above the
    rounding level of a normalised sum, so it is corrected (and the gradient is the plain one)."""
    from deft.objectives import Target

    name = custom_target("test_half_heavy",
                         lambda d: Target(label=0.0, dists=((0.5, d.teacher_logP + math.log(1.0015)),)))
    c = make_case(n=97, seed=8)
    fused, plain = run_fused(c, name, chunk_size=40), run_plain(c, name)
    for i, what in enumerate(("dhidden", "dweight", "dbias"), 1):
        torch.testing.assert_close(fused[i], plain[i], rtol=1e-5, atol=2e-6, msg=what)


def test_a_normalised_target_costs_no_correction_pass(custom_target):
    """A target whose distributions sum to 1 (up to rounding), including rows where every weight
    is 0, is not corrected: the engine forms no second ``exp`` over the ``[n, V]`` logits."""
    from torch.overrides import TorchFunctionMode

    from deft.objectives import Target

    class ExpCalls(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.count = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.count += func is torch.exp and args[0].dim() == 2
            return func(*args, **(kwargs or {}))

    def target(d):
        w = (torch.arange(d.logits.shape[0]) % 2).float()  # every other row: no distribution term
        return Target(label=1.0 - w, dists=((w, d.teacher_logP),))

    name = custom_target("test_half_kd", target)
    c = make_case(n=61, seed=9)
    with ExpCalls() as calls:
        fused = run_fused(c, name, chunk_size=20)
    assert calls.count == 0
    plain = run_plain(c, name)
    for i, what in enumerate(("loss", "dhidden", "dweight", "dbias")):
        torch.testing.assert_close(fused[i], plain[i], rtol=1e-4, atol=1e-5, msg=what)


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
