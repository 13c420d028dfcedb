"""The scorer registry, the ``math`` scorer and the text scorers at their borders.

Written to kill mutants of src/deft/eval/scorers.py, scorers_math.py and scorers_text.py that
survived ``make mutate`` (docs/testing.md). Expected values come from the scorers' documented
rules (module docstrings, the paper's evaluation protocol) and hand computations in the comments.
"""

import pytest

from deft.eval.scorers import check_scorer, extracted_answer
from deft.eval.scorers_math import math_equal, parse_number, timeout_seconds


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
    for none in (None, 0, 0.0, -1, -2.5):
        assert timeout_seconds(none) is None
