"""Tests of deft.eval.scorers_paper_math: ``math_paper``: the Qwen2.5-Math evaluation harness's answer
extraction and equality, as the paper's reference code (``luludus/DEFT``, ``evaluations/math``)
scores math benchmarks."""

import pytest

from deft.eval import score
from deft.eval.scorers_paper_math import STRIP_EXCEPTIONS, extract_answer_paper, strip_string_paper

from eval_scorers_paper_helpers import cases


@pytest.mark.parametrize("case", cases("math"), ids=lambda c: repr(c["prediction"][:40]))
def test_math_paper_matches_the_reference(case):
    ds = case["data_name"]
    skip = ds in STRIP_EXCEPTIONS
    assert strip_string_paper(extract_answer_paper(case["prediction"], ds), skip_unit=skip) == case["extracted"]
    assert strip_string_paper(case["reference"], skip_unit=skip) == case["gold"]
    assert score("math_paper", case["prediction"], case["reference"], data_name=ds) == case["score"]


def test_math_paper_edge_cases_by_hand():
    # Minerva form first, even when a box follows
    assert extract_answer_paper("final answer is $7$. I hope it is correct. \\boxed{8}") == "7"
    # an unclosed last box runs to the end of the text
    assert extract_answer_paper("\\boxed{12") == "12"
    # no box, no statement: the last number (commas removed)
    assert extract_answer_paper("we get 3 and then 1,250 in total") == "1250"
    # gold/100, gold, gold*100 at relative tolerance 1e-4
    assert score("math_paper", "\\boxed{0.12}", "12") == 1.0
    assert score("math_paper", "\\boxed{1200}", "12") == 1.0
    assert score("math_paper", "\\boxed{12.001}", "12") == 1.0       # |diff| / 12 < 1e-4
    assert score("math_paper", "\\boxed{12.01}", "12") == 0.0
    # deft's own math scorer does not accept the percentage reading nor the last number
    assert score("math", "\\boxed{1200}", "12") == 0.0
    assert score("math", "we get 12", "12") == 0.0
