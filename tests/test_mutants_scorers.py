"""The scorer registry, the ``math`` scorer and the text scorers at their borders.

Written to kill mutants of src/deft/eval/scorers.py, scorers_math.py and scorers_text.py that
survived ``make mutate`` (docs/testing.md). Expected values come from the scorers' documented
rules (module docstrings, the paper's evaluation protocol) and hand computations in the comments.
"""

import pytest

from deft.eval.scorers import check_scorer, extracted_answer


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
