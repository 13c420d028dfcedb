"""Typed needs: a new input kind is one registry entry, and it reaches an objective through the
plain engine, the fused engine and the patched model forward without other changes."""

import pytest
import torch

import deft
from deft.model.fused_forward import patch_fused_loss
from deft.objectives import (
    NEEDS, REGISTRY, CrossEntropyTargets, Need, PerTokenLoss, objective_inputs, register, register_need,
)

from tiny_models import tiny_model


@pytest.fixture
def advantages():
    """A per-token ``advantages`` need (source ``batch``) and an objective ``-A log p`` using it."""
    register_need(Need("advantages", "per-token advantages", "batch", "advantages"))

    @register("test_advantage_nll", "gate", "test only: -A log p", needs=("advantages",))
    def _fn(t):
        return PerTokenLoss(-t.advantages * t.logp)

    yield "test_advantage_nll"
    REGISTRY.pop("test_advantage_nll")
    NEEDS.pop("advantages")


@pytest.fixture
def second_teacher():
    """A second teacher (source ``model``) and ``KD to the mean of both teachers' distributions``."""
    register_need(Need("teacher2", "a second teacher's distribution", "model", "teacher2_logP"))

    @register("test_two_teachers", "distribution", "test only", needs=("teacher", "teacher2"))
    def _fn(d):
        return CrossEntropyTargets(dists=((0.5, d.teacher_logP), (0.5, d.teacher2_logP)))

    yield "test_two_teachers"
    REGISTRY.pop("test_two_teachers")
    NEEDS.pop("teacher2")


def case(n=23, hidden=8, vocab=31, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g, dtype=torch.float64)
    w = torch.randn(vocab, hidden, generator=g, dtype=torch.float64)
    y = torch.randint(0, vocab, (n,), generator=g)
    y[::4] = -100
    return h, w, y, g


def test_a_new_per_token_need_reaches_both_engines(advantages):
    h, w, y, g = case()
    adv = torch.randn(y.shape, generator=g, dtype=torch.float64)
    keep = y != -100
    logp = torch.log_softmax(h @ w.T, -1)[keep].gather(-1, y[keep, None])[:, 0]
    expected = -(adv[keep] * logp).sum()
    plain = deft.token_loss(h @ w.T, y, advantages, reduction="sum", inputs={"advantages": adv})
    fused = deft.fused_token_loss(h, w, y, advantages, chunk_size=5, inputs={"advantages": adv})
    torch.testing.assert_close(plain.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused.double(), expected, rtol=1e-5, atol=1e-6)
    assert [n.name for n in objective_inputs(advantages)] == ["advantages"]
    with pytest.raises(ValueError, match="needs per-token advantages: pass advantages"):
        deft.fused_token_loss(h, w, y, advantages)
    with pytest.raises(ValueError, match="unknown input 'advantage'"):
        deft.token_loss(h @ w.T, y, advantages, inputs={"advantage": adv})


def test_a_new_per_token_need_reaches_the_patched_forward(advantages):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (2, 9), generator=g)
    labels = ids.clone()
    labels[:, :3] = -100
    adv = torch.rand(2, 9, generator=g) + 0.5
    model = tiny_model()
    logits = model(input_ids=ids).logits.detach()
    expected = deft.token_loss(logits[:, :-1], labels[:, 1:], advantages, reduction="sum",
                               inputs={"advantages": adv[:, 1:]})
    patch_fused_loss(model, advantages)
    torch.testing.assert_close(model(input_ids=ids, labels=labels, advantages=adv).loss, expected,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="per-token advantages: pass advantages=... to the model's forward"):
        model(input_ids=ids, labels=labels)


def test_a_new_model_need_reaches_both_engines_and_the_patch(second_teacher):
    h, w, y, g = case(seed=2)
    th, t2h = (torch.randn(h.shape, generator=g, dtype=torch.float64) for _ in range(2))
    keep = y != -100
    logP = torch.log_softmax(h @ w.T, -1)[keep]
    mix = 0.5 * (torch.softmax(th @ w.T, -1) + torch.softmax(t2h @ w.T, -1))[keep]
    expected = -(mix * logP).sum()
    plain = deft.token_loss(h @ w.T, y, second_teacher, reduction="sum", teacher_logits=th @ w.T,
                            inputs={"teacher2_logits": t2h @ w.T})
    fused = deft.fused_token_loss(h, w, y, second_teacher, chunk_size=7, teacher_hidden=th, teacher_weight=w,
                                  inputs={"teacher2_hidden": t2h, "teacher2_weight": w})
    torch.testing.assert_close(plain.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused.double(), expected, rtol=1e-5, atol=1e-6)
    assert [n.name for n in objective_inputs(second_teacher)] == ["teacher", "teacher2"]

    ids = torch.randint(0, 97, (2, 8), generator=g)
    model, t1, t2 = tiny_model(seed=0), tiny_model(seed=1), tiny_model(seed=2)
    lg = [m(input_ids=ids).logits.detach()[:, :-1] for m in (model, t1, t2)]
    expected = deft.token_loss(lg[0], ids[:, 1:], second_teacher, reduction="sum", teacher_logits=lg[1],
                               inputs={"teacher2_logits": lg[2]})
    with pytest.raises(ValueError, match="second teacher"):
        patch_fused_loss(model, second_teacher, teacher=t1)
    patch_fused_loss(model, second_teacher, teacher=t1, models={"teacher2": t2})
    torch.testing.assert_close(model(input_ids=ids, labels=ids).loss, expected, rtol=1e-5, atol=1e-5)


def test_register_validates_needs():
    with pytest.raises(ValueError, match="unknown need 'teachr'.*teacher"):
        register("test_bad_need", "distribution", "x", needs=("teachr",))(lambda d: None)
    assert "test_bad_need" not in REGISTRY
    with pytest.raises(ValueError, match="source must be one of"):
        register_need(Need("x", "x", "file", "x"))
    with pytest.raises(ValueError, match="already registered"):
        register_need(Need("teacher", "x", "model", "other_logP"))


def test_the_registry_describes_every_builtin_need():
    assert set(NEEDS) == {"ref", "teacher", "old_logprobs", "batch"}
    assert NEEDS["teacher"].option == "teacher_model" and NEEDS["ref"].option == "reference_model"
    assert [n.name for n in objective_inputs("kd")] == ["teacher"]
    assert [n.name for n in objective_inputs("sft_kl")] == ["ref"]
    assert [n.name for n in objective_inputs("psft")] == ["old_logprobs"]
    assert objective_inputs("cayley_floor") == [] and objective_inputs("deft") == []
    # one wording of a missing input, naming how to provide it in each layer
    assert "pass ref_logits" in NEEDS["ref"].how("plain") and "teacher=" in NEEDS["teacher"].how("patch")
    assert NEEDS["teacher"].how("config") == "set teacher_model"
    with pytest.raises(ValueError, match="objective 'kd' needs a teacher model's distribution"):
        deft.token_loss(torch.zeros(2, 5), torch.tensor([0, 1]), "kd")


def test_objectives_read_only_what_they_declare_and_their_kind_receives():
    @register("test_gate_teacher", "gate", "test only", needs=("teacher",))
    def _gate(t):
        return PerTokenLoss(-t.logp + 0 * t.teacher_logP[:, 0])

    @register("test_undeclared", "gate", "test only")
    def _undeclared(t):
        return PerTokenLoss(-t.logp * t.old_logprobs)

    try:
        z, y = torch.zeros(3, 5), torch.tensor([0, 1, 2])
        with pytest.raises(ValueError, match="gate objective sees only log p, not 'teacher_logP'.*'distribution'"):
            deft.token_loss(z, y, "test_gate_teacher", teacher_logits=z)
        with pytest.raises(ValueError, match="reads 'old_logprobs'.*without declaring needs=\\('old_logprobs',\\)"):
            deft.fused_token_loss(torch.eye(5)[:3], torch.eye(5), y, "test_undeclared")
        assert deft.list_objectives()["test_gate_teacher"] == "test only (needs teacher)"
    finally:
        REGISTRY.pop("test_gate_teacher")
        REGISTRY.pop("test_undeclared")
