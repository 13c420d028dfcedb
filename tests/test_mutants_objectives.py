"""Objective declarations the value tests don't reach: parameter ranges, which objectives report a
focus index, the clamps of the focus formulas at their borders, and the spec parser's corners.

Each test here was written to fail for a mutant that survived ``make mutate`` (docs/testing.md);
the expected values come from the paper and the design brief, not from the code.
"""

import math

import pytest
import torch

import deft
from deft.objectives import REGISTRY, Param, cayley_focus, parse_objective

# objectives whose loss is the deformed log (1 - p^a)/a with focus index a (paper Sections 3-5)
FOCUS = {"p", "power", "cayley", "cayley_floor", "deft"}

# every parameter's allowed range: (spec prefix, parameter, last valid low, first invalid low,
# last valid high or None, first invalid high or None)
RANGES = [
    ("power", "alpha", 0.0, -1e-9, None, None),
    ("eaft", "k", 2, 1, None, None),
    ("eaft", "gamma", 0.0, -1e-9, None, None),
    ("profit", "tau", 0.0, -1e-9, 1.0, 1.000001),
    ("psft", "eps_low", 0.0, -1e-9, 1.0, 1.000001),
    ("psft", "eps_high", 0.0, -1e-9, None, None),
    ("label_smoothing", "lam", 0.0, -1e-9, 1.0, 1.000001),
    ("sft_kl", "lam", 0.0, -1e-9, None, None),
    ("asft", "lam", 0.0, -1e-9, None, None),
    ("kd_hybrid", "lam", 0.0, -1e-9, 1.0, 1.000001),
    ("target_sft", "eta", 0.0, -1e-9, 1.0, 1.000001),
]


@pytest.mark.parametrize("name,param,low,below,high,above", RANGES, ids=[f"{r[0]}.{r[1]}" for r in RANGES])
def test_parameter_ranges(name, param, low, below, high, above):
    assert parse_objective(f"{name}:{param}={low}").kwargs[param] == low
    with pytest.raises(ValueError, match=rf"'{param}' must be >= "):
        parse_objective(f"{name}:{param}={below}")
    if high is not None:
        assert parse_objective(f"{name}:{param}={high}").kwargs[param] == high
        with pytest.raises(ValueError, match=rf"'{param}' must be <= "):
            parse_objective(f"{name}:{param}={above}")
    else:
        assert parse_objective(f"{name}:{param}=1000").kwargs[param] == 1000


def test_gem_temperature_must_be_strictly_positive():
    with pytest.raises(ValueError, match="'beta' must be > 0"):
        parse_objective("gem:beta=0")
    assert parse_objective("gem:beta=1e-6").kwargs["beta"] == 1e-6


def test_declared_focus_matches_the_paper_family():
    assert {name for name, d in REGISTRY.items() if d.has_focus} == FOCUS


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_focus_statistic_is_present_exactly_for_the_family_even_without_loss_tokens(name):
    """A step with no loss token must still log the same statistics keys (the fused engine's
    empty-step path reads the declaration)."""
    h = torch.randn(3, 4, dtype=torch.float64)
    w = torch.randn(6, 4, dtype=torch.float64)
    kw = {"ref_hidden": h, "ref_weight": w, "teacher_hidden": h, "teacher_weight": w,
          "old_logprobs": torch.zeros(3, dtype=torch.float64)}
    _, stats = deft.fused_token_loss(h, w, torch.full((3,), -100), name, return_stats=True, **kw)
    assert ("focus" in stats) == (name in FOCUS)
    _, stats = deft.fused_token_loss(h, w, torch.tensor([0, 1, 2]), name, return_stats=True, **kw)
    assert ("focus" in stats) == (name in FOCUS)


def test_cayley_focus_is_finite_when_rounding_puts_p_above_one():
    """``1 - p`` from a log-probability that rounded to just above 0 is clamped at 0: a = p."""
    logp = torch.tensor([1e-6, 0.0], dtype=torch.float64)
    a = cayley_focus(logp)
    assert torch.isfinite(a).all()
    assert a.tolist() == pytest.approx([math.exp(1e-6), 1.0])


def test_cayley_floor_focus_is_clamped_below_at_one_thousandth():
    """Tokens of a batch that all have p < 1e-3 get the reference code's floor a = 0.001."""
    z = torch.tensor([[0.0, 0.0, 0.0, 0.0, -12.0]] * 2, dtype=torch.float64)
    y = torch.tensor([4, 4])
    p = math.exp(-12.0) / (4 + math.exp(-12.0))
    assert 0.5 * p + (1 - 0.5 * p) * p / (2 - p) < 1e-3  # the formula alone would go below the floor
    loss, stats = deft.token_loss(z, y, "cayley_floor", reduction="none", return_stats=True)
    assert stats["focus"].tolist() == pytest.approx([0.001, 0.001])
    assert loss.tolist() == pytest.approx([(1 - p ** 0.001) / 0.001] * 2, rel=1e-5)


def test_listing_lines_add_parameters_and_needs():
    listed = deft.list_objectives()
    assert listed["nll"] == REGISTRY["nll"].summary  # no parameters, needs nothing: the summary alone
    assert listed["power"] == REGISTRY["power"].summary + " [alpha=0.5]"
    assert listed["eaft"] == REGISTRY["eaft"].summary + " [k=20, gamma=1.0]"
    assert listed["cayley_floor"] == REGISTRY["cayley_floor"].summary  # a statistic, not an input to name
    assert listed["kd"].count("(needs") == 1  # said by the summary itself, not repeated


def test_listing_names_the_inputs_a_summary_does_not_mention():
    from deft.objectives import Terms, register
    from deft.objectives.needs import NEEDS

    @register("_listing_probe", "gate", "a probe objective", needs=("old_logprobs", "batch"),
              params={"c": Param(2, "a constant", min=0)})
    def _probe(t, c):
        return Terms(-t.logp)

    try:
        line = deft.list_objectives()["_listing_probe"]
        head = "a probe objective [c=2] (needs "
        assert line.startswith(head) and line.endswith(")")
        # the listing names the input (by name or description), never the batch statistic
        assert line[len(head):-1] in ("old_logprobs", NEEDS["old_logprobs"].what)
        d = REGISTRY["_listing_probe"]
        assert d.kind == "gate" and d.needs == frozenset({"old_logprobs", "batch"})
        assert d.has_focus is False  # the default
        with pytest.raises(ValueError, match="already registered"):
            register("_listing_probe", "gate", "again")(_probe)
    finally:
        del REGISTRY["_listing_probe"]


def test_register_takes_its_options_by_keyword_only():
    from deft.objectives import register

    with pytest.raises(TypeError):
        register("_positional_probe", "gate", "summary", {})
    with pytest.raises(ValueError, match="kind must be one of gate, distribution, autograd"):
        register("_kind_probe", "loss", "summary")
    assert "_positional_probe" not in REGISTRY and "_kind_probe" not in REGISTRY


@pytest.mark.parametrize("spec,mask", [
    ("nll[p>=0]", ("top", 0.0)), ("nll[p<=1]", ("bottom", 1.0)), ("nll[p>=1.0]", ("top", 1.0)),
    ("OnlyTopP-0", ("top", 0.0)), ("OnlyBottomP-1", ("bottom", 1.0)),
])
def test_mask_thresholds_at_the_ends_of_the_unit_interval(spec, mask):
    assert parse_objective(spec).mask == mask


@pytest.mark.parametrize("spec,match", [
    ("nll[p>=abc]", r"mask threshold must be a number in \[0, 1\], got 'abc'"),
    ("OnlyTopP-x", r"mask threshold must be a number in \[0, 1\], got 'x'"),
    ("nll[p>=-0.01]", r"mask threshold must be in \[0, 1\], got '-0.01'"),
    ("nll[p<=1.01]", r"mask threshold must be in \[0, 1\], got '1.01'"),
    ("OnlyTopP-0.1[p>=0.2]", "already sets a mask"),
    ("   ", "non-empty string"),
])
def test_bad_masks_and_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_objective(spec)


def test_non_string_specs_are_refused():
    with pytest.raises(ValueError, match="non-empty string"):
        parse_objective(3)
    with pytest.raises(ValueError, match="non-empty string"):
        parse_objective(None)


def test_an_objective_passes_through_or_takes_overrides():
    obj = parse_objective("power:alpha=0.25[p>=0.1]")
    assert parse_objective(obj) is obj
    again = parse_objective(obj, alpha=0.75)
    assert again.kwargs == {"alpha": 0.75} and again.mask == ("top", 0.1)
    assert parse_objective("power", alpha="0.3").kwargs == {"alpha": 0.3}


def test_eaft_needs_two_words_and_works_with_exactly_two():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        deft.token_loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), "eaft")
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # P = (1/4, 3/4)
    loss = deft.token_loss(z, torch.tensor([1]), "eaft", reduction="sum")
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(loss) == pytest.approx(-(h / math.log(2)) * math.log(0.75), rel=1e-6)


def test_profit_threshold_border():
    """ProFiT keeps p >= tau ("higher") and p < tau ("lower"): a token exactly at tau is kept by
    "higher" only."""
    z = torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    _, stats = deft.token_loss(z, y, "nll", return_stats=True)
    tau = float(stats["p"][0])  # the library's own fp32 p of token 0, so that p == tau exactly
    nll = -torch.log_softmax(z, -1)[[0, 1], y]
    assert float(stats["p"][1]) > tau
    higher = deft.token_loss(z, y, f"profit:tau={tau!r}", reduction="none")
    lower = deft.token_loss(z, y, f"profit:tau={tau!r},direction=lower", reduction="none")
    assert higher.tolist() == pytest.approx(nll.tolist(), rel=1e-6)
    assert lower.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("eps_low", [0.0, 0.5, 1.0])
def test_psft_lower_clip_has_no_effect_with_a_positive_advantage(eps_low):
    """-min(r, clip(r, 1-lo, 1+hi)) = -min(r, 1+hi) for every lo in [0, 1], eps_low = 0 included."""
    z = torch.tensor([[0.0, 1.0, 2.0]] * 3, dtype=torch.float64)
    y = torch.tensor([1, 1, 1])
    p = math.exp(1.0) / (1 + math.exp(1.0) + math.exp(2.0))
    ratios = [0.5, 1.1, 2.0]  # below 1 - lo, inside, above 1 + hi (hi = 0.28)
    old = torch.tensor([math.log(p / r) for r in ratios], dtype=torch.float64)
    loss = deft.token_loss(z, y, f"psft:eps_low={eps_low}", reduction="none", old_logprobs=old)
    assert loss.tolist() == pytest.approx([-0.5, -1.1, -1.28], rel=1e-5)


@pytest.mark.parametrize("spec,line", [
    ("nll[p>=0.25]", "mask: sg(p) >= 0.25; the mean divides by all loss tokens"),
    ("nll[p<=0.25]", "mask: sg(p) <= 0.25; the mean divides by all loss tokens"),
    ("OnlyTopP-0.5", "mask: sg(p) >= 0.5; the mean divides by the selected tokens (reference semantics)"),
    ("OnlyBottomLogP-0.5", "mask: sg(p) <= 0.5; the mean divides by the selected tokens (reference semantics)"),
])
def test_mask_description_states_the_side_of_the_threshold(spec, line):
    # design brief: obj[p>=tau] keeps sg(p) >= tau, obj[p<=tau] keeps sg(p) <= tau
    from deft.objectives import describe_mask

    assert describe_mask(parse_objective(spec)) == line


def test_selected_normalizer_without_a_reference_name_is_refused():
    # only p and nll with a mask have reference names (OnlyTop/BottomP, OnlyTop/BottomLogP); any other
    # objective normalised by its selected tokens has none, and its spec must not pretend otherwise
    import dataclasses

    for spec in ("power:alpha=0.5[p>=0.1]", "deft[p<=0.9]", "nll[p>=0.1]"):
        obj = dataclasses.replace(parse_objective(spec), normalizer="selected")
        if obj.name == "nll":
            assert obj.spec == "OnlyTopLogP-0.1"
            continue
        with pytest.raises(ValueError, match="has no reference name"):
            obj.spec
