"""The scorer registry, the ``math`` scorer and the text scorers at their borders.

Written to kill mutants of src/deft/eval/scorers.py, scorers_math.py and scorers_text.py that
survived ``make mutate`` (docs/testing.md). Expected values come from the scorers' documented
rules (module docstrings, the paper's evaluation protocol) and hand computations in the comments.
"""

import inspect

import pytest

from deft.eval.scorers import check_scorer, extracted_answer
from deft.eval.scorers_math import math_equal, parse_number, score_math, timeout_seconds


# ---------------------------------------------------------------- scorers.py


def test_a_bare_rg_prefix_is_an_unknown_scorer_not_an_unknown_task():
    # "rg:" names no task at all: the generic message listing the valid scorers, not the task list
    with pytest.raises(ValueError, match=r"unknown scorer 'rg:'; valid scorers: math, mcq"):
        check_scorer("rg:")


def test_unknown_reasoning_gym_task_is_named_exactly():
    # the task is everything after "rg:"; a one-letter task is a task name too
    with pytest.raises(ValueError, match=r"unknown reasoning-gym task 'x' in scorer 'rg:x'; valid tasks: "):
        check_scorer("rg:x")
    with pytest.raises(ValueError, match=r"unknown reasoning-gym task 'no_such_task' in scorer"):
        check_scorer("rg:no_such_task")


def test_math_paper_extraction_keeps_units_for_minerva_math():
    # the harness strips unit words except for carp_en and minerva_math (STRIP_EXCEPTIONS);
    # "5 cm" -> units kept, spaces removed -> "5cm"; for the default data set "cm" is deleted -> "5"
    assert extracted_answer("math_paper", "so \\boxed{5 cm}", data_name="minerva_math") == "5cm"
    assert extracted_answer("math_paper", "so \\boxed{5 cm}", data_name="math") == "5"
    assert extracted_answer("math_paper", "so \\boxed{5 cm}") == "5"  # no data set: "math"
    assert extracted_answer("math_paper", "so \\boxed{5 cm}", data_name=None) == "5"


def test_extracted_answer_of_the_paper_scorers_and_untagged_rg_answers():
    assert extracted_answer("math_paper", "The answer is \\boxed{3}.") == "3"
    assert extracted_answer("math_paper", "\\boxed{}") is None  # an empty box: no answer
    # figfont paper scorers read the raw text (not stripped, not lower-cased)
    assert extracted_answer("exact_paper", " Paris ") == " Paris "
    assert extracted_answer("jaro_winkler_paper", "Paris") == "Paris"
    assert extracted_answer("exact_normalized_paper", "") is None
    # rg:<task> without an <answer> tag: the whole stripped prediction
    assert extracted_answer("rg:countdown", "  1 + 2  ") == "1 + 2"
    assert extracted_answer("rg:countdown", "   ") is None


# ---------------------------------------------------------------- scorers_math.py


@pytest.mark.parametrize("text, value", [
    ("1.3e-27", 1.3e-27),                   # e1: 1.3 * 10^-27
    ("5e3", 5000.0),
    ("-7E+2", -700.0),
    ("2.5 \\times 10^{3}", 2500.0),          # e2: braced exponent
    ("1.5 \\times 10^{-2}", 0.015),
    ("4 \\cdot 10^5", 400000.0),             # e3: one unbraced digit
    ("3*10^2", 300.0),
])
def test_parse_number_reads_scientific_notation(text, value):
    got = parse_number(text)
    assert got is not None
    assert got[0] == pytest.approx(value, rel=1e-12)
    assert got[1:] == (False, False)         # not a percentage; an exponent makes it no integer literal


def test_scientific_answers_compare_by_value():
    assert math_equal("1.5e-2", "0.015") is True
    assert math_equal("2.5 \\times 10^{3}", "2500") is True
    assert math_equal("2.5 \\times 10^{3}", "250") is False


def test_parse_number_refuses_numbers_python_cannot_hold():
    # 10.0 ** 400 overflows a float (OverflowError); an exponent of 5000 digits exceeds Python's
    # int-from-string limit (ValueError): neither is a plain number, and neither may raise
    assert parse_number("1e400") is None
    assert parse_number("1e" + "9" * 5000) is None
    assert math_equal("1e400", "1") is False


def test_parse_number_strips_up_to_three_trailing_unit_groups():
    # one unit group per pass; kg m^2 s is three groups: "12" remains, an integer literal
    assert parse_number("12 \\mathrm{kg}\\,\\mathrm{m}^2\\,\\mathrm{s}") == (12.0, False, True)
    # a fourth group is more than the three passes remove: not a plain number
    assert parse_number("12 \\mathrm{kg}\\,\\mathrm{m}^2\\,\\mathrm{s}\\,\\mathrm{K}") is None


def test_timeout_seconds_whole_seconds_and_no_limit_when_not_positive():
    # the limit is rounded up to whole seconds, at least 1; zero, negative or no timeout: no limit
    assert timeout_seconds(0.2) == 1
    assert timeout_seconds(2.5) == 3
    assert timeout_seconds(4) == 4
    for none in (None, 0, 0.0, -0.5, -1, -2.5):
        assert timeout_seconds(none) is None


def test_math_functions_take_their_answers_by_name_and_their_options_by_keyword_only():
    # prediction/reference may be named; timeout and rel_tol are keyword-only (a positional third
    # argument is refused rather than read as a time limit)
    assert math_equal(prediction="0.5", reference="\\frac{1}{2}") is True
    assert score_math(prediction="so \\boxed{2}", reference="2") == 1.0
    with pytest.raises(TypeError):
        math_equal("1", "1", 5.0)
    with pytest.raises(TypeError):
        score_math("\\boxed{1}", "1", 5.0)


def test_math_time_limit_defaults_to_five_seconds():
    # the documented API default of both entry points (one limit per parse and per comparison)
    for fn in (math_equal, score_math):
        assert inspect.signature(fn).parameters["timeout"].default == 5.0


def test_a_missing_side_is_never_equal_even_to_the_text_none():
    assert math_equal(None, "None") is False
    assert math_equal("None", None) is False


def test_an_answer_empty_after_normalisation_is_never_equal():
    # "..." is empty once trailing dots are removed: nothing to compare, whatever math-verify makes of it
    assert math_equal("...", "0...") is False
    assert math_equal("0...", "...") is False


def test_an_answer_math_verify_cannot_parse_is_not_equal():
    # "}{" is neither a plain number nor anything math-verify extracts: a failed parse is a wrong answer
    assert math_equal("}{", "1") is False
    assert math_equal("1", "}{") is False


def test_a_box_inside_an_answer_is_read_first():
    # the answer is parsed as \\boxed{answer} with the box at math-verify's highest priority (0), so a
    # box inside it wins over a Minerva "final answer is $X$. I hope" phrase further on
    assert math_equal("3", "x \\boxed{3} final answer is $5$. I hope") is True
    assert math_equal("5", "x \\boxed{3} final answer is $5$. I hope") is False


def test_gsm8k_reference_is_reduced_to_its_number_before_comparing():
    # "#### 2.5" -> 2.5, a non-integer reference: a relative tolerance of 1e-4 applies
    # (|2.50001 - 2.5| / 2.5 = 4e-6); math-verify alone would round to 6 decimals and refuse it
    assert score_math("\\boxed{2.50001}", "Half of 5 is 2.5.\n#### 2.5") == 1.0
    assert score_math("\\boxed{2.51}", "Half of 5 is 2.5.\n#### 2.5") == 0.0


# ---------------------------------------------------------------- the scorer registry


def _ignore(prediction, reference):
    return 0.0


def test_a_declaration_cannot_be_changed_after_registration():
    # the registry hands out its own declarations: a caller must not be able to edit one in place
    import dataclasses

    from deft.eval.scorers import get_scorer

    decl, _ = get_scorer("math")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decl.max_new_tokens = 1


def test_a_scorer_without_extractor_reads_the_stripped_prediction():
    from deft.eval.scorers import register_scorer, unregister_scorer

    decl = register_scorer("plain_test_scorer", _ignore, "test only")
    try:
        assert decl.extract("  the answer \n") == "the answer"
        assert extracted_answer("plain_test_scorer", " x ") == "x"
        assert decl.extract(" \n ") is None  # nothing but blanks: no answer
    finally:
        unregister_scorer("plain_test_scorer")


@pytest.mark.parametrize("name", ["", "a:b", ":"])
def test_a_scorer_name_must_be_non_empty_and_colon_free(name):
    from deft.eval.scorers import SCORER_REGISTRY, register_scorer

    with pytest.raises(ValueError, match="a non-empty name without ':'"):
        register_scorer(name, _ignore, "test only")
    assert name not in SCORER_REGISTRY


@pytest.mark.parametrize("name", ["math:x", "exact:foo", "nosuch:x"])
def test_an_argument_after_a_scorer_that_takes_none_is_unknown(name):
    # only a scorer declared with argument= (rg) takes a ':<arg>' part
    with pytest.raises(ValueError, match=rf"unknown scorer '{name}'; valid scorers: "):
        check_scorer(name)


def test_paper_summaries_average_the_score_grid():
    from deft.eval.scorers import get_scorer

    # two problems, three samples: per-problem means 1/3 and 1, Average@k = 2/3
    grid = [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    for name, key in [("exact_paper", "score"), ("exact_normalized_paper", "normalized_score"),
                      ("jaro_winkler_paper", "jaro_winkler_similarity"), ("mcq_paper", "acc")]:
        out = get_scorer(name)[0].reference_summary(grid)
        assert out == {key: pytest.approx(2 / 3)}
    # fractional sample scores (Jaro-Winkler): means 0.25 and 0.75, Average@k = 0.5
    assert get_scorer("jaro_winkler_paper")[0].reference_summary([[0.5, 0.0], [1.0, 0.5]]) == {
        "jaro_winkler_similarity": pytest.approx(0.5)}


def test_math_paper_summary_is_per_sample_index():
    from deft.eval.scorers import get_scorer

    summary = get_scorer("math_paper")[0].reference_summary
    # columns (sample index j, mean over problems): 1, 1/2, 0; acc is column 0, mean_acc their mean 1/2
    out = summary([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    assert out["acc"] == pytest.approx(1.0)
    assert out["all_acc"] == pytest.approx([1.0, 0.5, 0.0])
    assert out["mean_acc"] == pytest.approx(0.5)
    # one problem (a one-row grid) with fractional scores: columns 0.5 and 0, mean_acc 0.25
    out = summary([[0.5, 0.0]])
    assert out == {"acc": pytest.approx(0.5), "all_acc": pytest.approx([0.5, 0.0]), "mean_acc": pytest.approx(0.25)}


@pytest.mark.parametrize("scorer, budget", [
    ("math", 2048), ("mcq", 2048), ("exact", 32), ("jaro_winkler", 32), ("rg:countdown", 1024),
    ("exact_paper", 32), ("exact_normalized_paper", 32), ("jaro_winkler_paper", 32), ("math_paper", 2048),
    ("mcq_paper", 2048),
])
def test_default_generation_budget_follows_the_primary_scorer(scorer, budget):
    # the budgets runner.default_max_new_tokens documents: 2048 math/multiple choice, 32 figfont, 1024 rg
    from deft.eval.problem import Problem
    from deft.eval.runner import default_max_new_tokens

    problem = Problem(benchmark="b", id="0", prompt="p", reference="r", scorers=(scorer, "exact"))
    assert default_max_new_tokens([problem]) == budget
