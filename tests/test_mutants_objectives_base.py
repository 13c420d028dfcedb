"""The objective declarations' building blocks (deft.objectives.base, deft.objectives.needs) where
the value tests don't reach: parameter parsing, the lazily computed statistics of Tokens, the need
lookup behind ``tokens.<field>``, and the wording of missing inputs.

Each test here was written to fail for a mutant that survived ``make mutate`` (docs/testing.md);
expected values come from the definitions (design brief, paper Section 3) or a hand computation.
"""

import dataclasses
import math
import re

import pytest
import torch

from deft.objectives import Dists, ObjectiveDef, Param, Tokens, deformed_log_loss, parse_objective
from deft.objectives.base import entropy_of
from deft.objectives.needs import NEEDS, Need


def test_param_is_an_immutable_declaration():
    # a registered parameter must not change under the objectives that share it
    param = Param(0.5, "a weight", min=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        param.default = 1.0
    assert hash(param) == hash(Param(0.5, "a weight", min=0.0))


@pytest.mark.parametrize("raw,value", [("yes", True), ("true", True), ("True", True), ("1", True),
                                       ("no", False), ("false", False), ("0", False), (True, True), (False, False)])
def test_boolean_parameters_parse_words_and_keep_booleans(raw, value):
    parsed = Param(False, "a switch").parse("probe", "flag", raw)
    assert parsed is value


def _tokens(logits, labels, **kw):
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, labels[:, None]).squeeze(-1) - lse
    return Tokens(logp, logits, lse, **kw)


def test_reading_an_unknown_attribute_is_an_attribute_error():
    # getattr(tokens, name, default) and hasattr must work for names that are no need's field
    t = _tokens(torch.zeros(2, 3), torch.tensor([0, 1]))
    for name in ("zzz_not_a_field", "aaa_not_a_field", "ref_logQ"):
        assert not hasattr(t, name)
        assert getattr(t, name, "fallback") == "fallback"


def test_an_undeclared_read_names_the_need_of_that_field():
    z, y = torch.zeros(2, 3), torch.tensor([0, 1])
    d = Dists(z, torch.logsumexp(z, -1), y)
    for need in NEEDS.values():
        if need.source == "statistic":
            continue
        message = f"reads '{need.field}' ({need.what}) without declaring needs=('{need.name}',)"
        with pytest.raises(ValueError, match=re.escape(message)):
            getattr(d, need.field)


def test_a_gate_objective_may_read_any_need_but_a_model_distribution():
    # only "model" needs ([n, V] distributions) are out of a gate objective's reach; a missing
    # statistic or per-token input is an undeclared read, whatever its name sorts as
    from deft.objectives.needs import Need, register_need

    register_need(Need("zz_stat_probe", "a probe statistic", "statistic", "zz_stat_probe_value"))
    try:
        t = _tokens(torch.zeros(2, 3), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match=re.escape("without declaring needs=('zz_stat_probe',)")):
            t.zz_stat_probe_value
        with pytest.raises(ValueError, match="a gate objective sees only log p, not 'teacher_logP'"):
            t.teacher_logP
    finally:
        NEEDS.pop("zz_stat_probe")


def test_tokens_takes_its_options_by_keyword_only():
    # probs, inputs and the former keywords are options: a fourth positional argument is a mistake
    z = torch.zeros(2, 3)
    lse = torch.logsumexp(z, -1)
    with pytest.raises(TypeError):
        Tokens(z[:, 0] - lse, z, lse, torch.softmax(z, -1))


def test_the_former_keywords_and_attributes_still_work():
    # objectives written before the needs registry pass old_logprobs / batch_mean_p as keywords and
    # subclasses read the former private attributes
    z, y = torch.zeros(2, 3), torch.tensor([0, 1])
    old, mean = torch.tensor([-0.5, -1.5]), torch.tensor(0.25)
    t = _tokens(z, y, old_logprobs=old, batch_mean_p=mean)
    assert t.old_logprobs is old and t.batch_mean_p is mean
    assert t._old_logprobs is old and t._batch_mean_p is mean
    bare = _tokens(z, y)
    assert bare._old_logprobs is None and bare._batch_mean_p is None


# P = (1/4, 1/4, 1/2): H = 1.5 ln 2, sum P^2 = 3/8; P = (1/2, 1/2, 0) (a -inf logit): H = ln 2, sum P^2 = 1/2;
# P = (0.9, 0.05, 0.05): H = -0.9 ln 0.9 - 0.1 ln 0.05 (below 1 nat), sum P^2 = 0.815
CASES = torch.tensor([[math.log(0.25), math.log(0.25), math.log(0.5)], [0.0, 0.0, -math.inf],
                      [math.log(0.9), math.log(0.05), math.log(0.05)]])
ENTROPY = [1.5 * math.log(2.0), math.log(2.0), -0.9 * math.log(0.9) - 0.1 * math.log(0.05)]
SUM_P2 = [3 / 8, 1 / 2, 0.815]


@pytest.mark.parametrize("with_probs", [False, True])
def test_entropy_and_sum_p2_by_hand_with_and_without_probabilities(with_probs):
    logits = CASES + torch.tensor([[1.0], [-2.0], [0.5]])  # a shift per row changes no probability
    probs = torch.softmax(logits, -1) if with_probs else None
    t = _tokens(logits, torch.tensor([2, 0, 1]), probs=probs)
    assert t.entropy.tolist() == pytest.approx(ENTROPY, abs=1e-6)
    assert t.sum_p2.tolist() == pytest.approx(SUM_P2, abs=1e-6)
    assert t.vocab_size == 3


def test_top_k_entropy_by_hand():
    # P = (1/2, 1/4, 1/8, 1/8): the top 2 renormalised are (2/3, 1/3); k above V takes all 4 words
    # (H = 1.75 ln 2); k = 1 leaves one word (H = 0)
    logits = torch.log(torch.tensor([[0.125, 0.5, 0.125, 0.25]])) + 3.0
    t = _tokens(logits, torch.tensor([1]))
    two = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert t.topk_entropy(2).item() == pytest.approx(two, abs=1e-6)
    assert t.topk_entropy(10).item() == pytest.approx(1.75 * math.log(2.0), abs=1e-6)
    assert t.topk_entropy(1).item() == pytest.approx(0.0, abs=1e-7)
    assert t.topk_entropy(2) is t.topk_entropy(2)  # computed once per k


def test_dists_takes_its_options_by_keyword_only():
    # logP (the differentiable log P of autograd objectives) and inputs are options, never positional
    z, y = torch.zeros(2, 3), torch.tensor([0, 1])
    lse = torch.logsumexp(z, -1)
    with pytest.raises(TypeError):
        Dists(z, lse, y, z - lse[:, None])
    d = Dists(z, lse, y, logP=z - lse[:, None])
    assert d.logp.tolist() == pytest.approx([-math.log(3.0)] * 2)


@pytest.mark.parametrize("with_probs", [False, True])
def test_entropy_is_never_negative(with_probs):
    # H = lse - sum_v P_v z_v is >= 0 by definition, but in float32 the difference of two numbers
    # near 1000 rounds below 0 for near-deterministic rows (down to about -1e-4 here); those rows
    # must read 0, as the direct formula -sum P log P gives (a negative entropy would turn into a
    # weight above 1 in EAFT-style gates). Both paths: from the engine's probabilities, and
    # deft.objectives.base.row_entropy from the logits alone.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 20, generator=gen) + 1000.0
    logits[:, 0] += 20.0
    probs = torch.softmax(logits, -1) if with_probs else None
    t = _tokens(logits, torch.zeros(2000, dtype=torch.long), probs=probs)
    exact = -(torch.softmax(logits.double(), -1) * torch.log_softmax(logits.double(), -1)).sum(-1)
    assert float(t.entropy.min()) >= 0.0
    torch.testing.assert_close(t.entropy.double(), exact, rtol=0, atol=1e-3)


def test_dists_forms_log_p_from_logits_or_returns_the_given_one():
    # Dists.logP = z - lse (a user's distribution objective may read it); a differentiable logP
    # given by the engine is returned as is, and the label log-probabilities are read from it
    z = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.0, -3.0, 2.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    y = torch.tensor([1, 3, 0])
    lse = torch.logsumexp(z, -1)
    expected = torch.log_softmax(z.double(), -1).float()
    d = Dists(z, lse, y)
    torch.testing.assert_close(d.logP, expected)
    assert d.vocab_size == 4 and d.logits.shape == (3, 4)
    given = expected.clone().requires_grad_()
    e = Dists(z, lse, y, logP=given)
    assert e.logP is given
    torch.testing.assert_close(e.logp.detach(), expected[torch.arange(3), y])
    assert e.logp.requires_grad
    assert e.vocab_size == 4


def test_entropy_of_treats_zero_probabilities_as_zero_terms():
    # -sum P log P over log-probabilities with a -inf entry (P = 0): 0 log 0 = 0, so P = (1/2, 1/2, 0)
    # has H = ln 2 and P = (1, 0, 0) has H = 0
    logP = torch.tensor([[math.log(0.5), math.log(0.5), -math.inf], [0.0, -math.inf, -math.inf]])
    assert entropy_of(logP).tolist() == pytest.approx([math.log(2.0), 0.0], abs=1e-7)


@pytest.mark.parametrize("a", [-0.5, -2.0])
def test_deformed_log_loss_at_a_negative_index(a):
    # L_a(p) = (1 - p^a) / a (paper Eq. 10) holds for every a != 0; only a = 0 is -log p
    p = torch.tensor([0.1, 0.5, 0.9])
    expected = [(1.0 - v ** a) / a for v in p.tolist()]
    assert deformed_log_loss(p.log(), a).tolist() == pytest.approx(expected, rel=1e-5)
    assert deformed_log_loss(p.log(), 0.0).tolist() == pytest.approx([-math.log(v) for v in p.tolist()], rel=1e-6)


def test_objective_declarations_are_immutable_and_hashable():
    # objectives are shared (registry entries, one parsed spec for a whole run); they must not change
    objective = parse_objective("power:alpha=0.5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        objective.mask = ("top", 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        objective.definition.summary = "changed"
    need = NEEDS["teacher"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        need.option = "other"


def test_an_objective_declared_without_has_focus_reports_no_focus():
    definition = ObjectiveDef("mine", "gate", lambda t: None, "a user's objective")
    assert definition.has_focus is False


def test_a_need_without_option_or_default_asks_for_a_record_column():
    # an input kind a user adds (one registry entry): records must carry it as a column
    need = Need("weight_x", "a per-token weight", "batch", "weight_x")
    assert need.how("config") == "give the records a 'weight_x' column"
    assert Need("w2", "w", "batch", "w2", default="computed by the trainer").how("config") == "computed by the trainer"
