"""Tests of deft.eval.scorers_paper_math: ``math_paper``: the Qwen2.5-Math evaluation harness's answer
extraction and equality, as the paper's reference code (``luludus/DEFT``, ``evaluations/math``)
scores math benchmarks."""

import math_verify.utils
import pytest

import deft.eval.scorers_math as scorers_math
from deft.eval import score
from deft.eval.scorers_paper_math import STRIP_EXCEPTIONS, extract_answer_paper, math_equal_paper, strip_string_paper

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


# (prediction, gold, the reference's answer) for normalised answers as the harness's ``math_equal``
# receives them. The expected values come from running ``math_equal`` of ``evaluations/math/grader.py``
# in luludus/DEFT on each pair (with its pinned sympy 1.12, antlr4-python3-runtime 4.11.1 and the
# latex2sympy2 it ships), not from reading it.
REFERENCE_EQUALITY = [
    # fractions vs decimals around relative 1e-4
    ("0.3333", "\\frac{1}{3}", True),
    ("0.33333", "\\frac{1}{3}", True),
    ("0.333", "\\frac{1}{3}", False),
    ("0.33336", "\\frac{1}{3}", True),
    ("0.33337", "\\frac{1}{3}", False),
    ("0.3334", "\\frac{1}{3}", False),
    ("\\frac{1}{3}", "0.3333", True),
    ("\\frac{1}{3}", "0.333", False),
    ("0.6667", "\\frac{2}{3}", True),
    ("0.667", "\\frac{2}{3}", False),
    ("0.66667", "\\frac{2}{3}", True),
    ("0.0833", "\\frac{1}{12}", False),
    ("0.08333", "\\frac{1}{12}", True),
    ("33.3", "\\frac{100}{3}", False),
    ("33.333", "\\frac{100}{3}", True),
    ("\\frac{100}{3}", "33.3", False),
    ("0.142857", "\\frac{1}{7}", True),
    ("0.1428", "\\frac{1}{7}", False),
    ("0.14285", "\\frac{1}{7}", True),
    ("2.5", "\\frac{5}{2}", True),
    ("1.25", "\\frac{5}{4}", True),
    ("0.3333", "1/3", True),
    ("\\frac{3}{4}", "0.75", True),
    ("0.7499", "\\frac{3}{4}", False),
    # negatives
    ("-0.3333", "-\\frac{1}{3}", True),
    ("0.3333", "-\\frac{1}{3}", False),
    ("-0.6667", "-\\frac{2}{3}", True),
    ("-1.4142", "-\\sqrt{2}", True),
    ("1.4142", "-\\sqrt{2}", False),
    ("-\\frac{1}{3}", "-0.3333", True),
    # square roots
    ("1.4142", "\\sqrt{2}", True),
    ("1.41421", "\\sqrt{2}", True),
    ("1.414", "\\sqrt{2}", False),
    ("1.41", "\\sqrt{2}", False),
    ("\\sqrt{2}", "1.41421", True),
    ("3.4641", "2\\sqrt{3}", True),
    ("3.464", "2\\sqrt{3}", True),
    ("3.46", "2\\sqrt{3}", False),
    ("3.4641", "\\sqrt{12}", True),
    ("0.7071", "\\frac{\\sqrt{2}}{2}", True),
    ("0.707", "\\frac{\\sqrt{2}}{2}", False),
    ("0.8660", "\\frac{\\sqrt{3}}{2}", True),
    ("2.4142", "1+\\sqrt{2}", True),
    ("2.4142", "\\sqrt{2}+1", True),
    ("1.2599", "\\sqrt[3]{2}", True),
    ("1.4142", "2^{0.5}", True),
    ("1.4142", "2^{1/2}", True),
    ("2\\sqrt{3}", "3\\sqrt{2}", False),
    ("\\sqrt{2}", "\\frac{\\sqrt{8}}{2}", True),
    # pi and e
    ("3.14159", "\\pi", False),
    ("3.1416", "\\pi", False),
    ("\\pi", "3.14159", False),
    ("1.5708", "\\frac{\\pi}{2}", False),
    ("6.2832", "2\\pi", False),
    ("\\frac{22}{7}", "\\pi", False),
    ("2.71828", "e", False),
    ("7.389", "e^{2}", False),
    ("0.5", "\\sin(\\frac{\\pi}{6})", False),
    ("0.5", "\\sin\\frac{\\pi}{6}", False),
    ("12.566", "4\\pi", False),
    ("2.71828", "\\exp(1)", True),
    ("0.6931", "\\ln2", True),
    ("0.6931", "\\ln(2)", True),
    ("0.6931", "\\log(2)", True),
    ("0.30103", "\\log_{10}2", True),
    ("1", "\\sin^2x+\\cos^2x", True),
    # percentages
    ("33.33\\%", "\\frac{1}{3}", True),
    ("50\\%", "\\frac{1}{2}", True),
    ("33.33%", "\\frac{1}{3}", False),
    ("\\frac{1}{3}", "33.33", False),
    ("0.3333", "\\frac{100}{3}", False),
    # powers, scientific forms
    ("999950", "10^{6}", True),
    ("999900", "10^{6}", True),
    ("999800", "10^{6}", False),
    ("0.00001", "10^{-5}", True),
    ("1.024", "2^{10}/1000", True),
    ("1024", "2^{10}", True),
    ("1023.9", "2^{10}", True),
    ("1023", "2^{10}", False),
    ("0.0001", "\\frac{1}{10000}", True),
    ("0.00010001", "\\frac{1}{10000}", True),
    # intervals and tuples with such parts
    ("(0.6,2.6667]", "(\\frac{3}{5},\\frac{8}{3}]", True),
    ("(0.6,2.667]", "(\\frac{3}{5},\\frac{8}{3}]", False),
    ("(1,4.5)", "(1,\\frac{9}{2})", True),
    ("(0.3333,0.5)", "(\\frac{1}{3},\\frac{1}{2})", True),
    ("(0.333,0.5)", "(\\frac{1}{3},\\frac{1}{2})", False),
    ("(1.4142,3)", "(\\sqrt{2},3)", True),
    ("(1.414,3)", "(\\sqrt{2},3)", False),
    ("[0.3333,1]", "[\\frac{1}{3},1]", True),
    ("(3.1416,1)", "(\\pi,1)", False),
    ("(-1.4142,1.4142)", "(-\\sqrt{2},\\sqrt{2})", True),
    # must stay false
    ("0.5", "\\frac{1}{3}", False),
    ("x", "0.3333", False),
    ("0.3333x", "\\frac{x}{3}", False),
    ("0.3333x", "\\frac{1}{3}", False),
    ("0", "\\frac{1}{100000}", False),
    ("0.00001", "0", False),
    ("\\infty", "10^{100}", False),
    ("i", "1", False),
    ("\\sqrt{-1}", "1", False),
    ("1+i", "1.0001+i", False),
    ("x+1", "x+1.00001", False),
    ("\\frac{1}{3}", "\\frac{1}{3}x", False),
    ("2", "\\frac{1+\\sqrt{5}}{2}", False),
    ("1.618", "\\frac{1+\\sqrt{5}}{2}", True),
    ("1.618", "\\frac{1+\\sqrt{5}}{2}x", False),
    ("abc", "0.3333", False),
    ("", "0", False),
    # symbolic forms that are equal anyway
    ("\\frac{2}{6}", "\\frac{1}{3}", True),
    ("2x", "x+x", True),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    # more pairs: a bare %, named constants, logarithms, overflow
    ("50%", "\\frac{1}{2}", False),
    ("50\\%", "0.5x", False),
    ("\\mathrm{e}", "2.71828", False),
    ("7.389", "\\exp(2)", True),
    ("π", "3.1416", False),
    ("2.7183", "E", False),
    ("1.0986", "\\ln3", True),
    ("\\frac{1}{3}", "\\frac{1}{3}+10^{-6}", True),
    ("\\frac{1}{3}", "\\frac{1}{3}+10^{-4}", False),
    ("10^{400}", "10^{401}", True),
    ("-2.4142", "-1-\\sqrt{2}", True),
    # matrices (strip_string_paper makes array and bmatrix pmatrix): same shape, cell by cell. These
    # rows were run through the reference's math_equal with this environment's sympy and antlr4 4.13.2
    ("\\begin{pmatrix}0.3333\\\\1\\end{pmatrix}", "\\begin{pmatrix}\\frac{1}{3}\\\\1\\end{pmatrix}", True),
    ("\\begin{pmatrix}2.0001\\\\1\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", True),
    ("\\begin{pmatrix}1.41421\\\\0\\end{pmatrix}", "\\begin{pmatrix}\\sqrt{2}\\\\0\\end{pmatrix}", True),
    ("\\begin{pmatrix}0.5\\\\1\\end{pmatrix}", "\\begin{pmatrix}50\\\\1\\end{pmatrix}", True),  # the percent rule
    ("\\begin{bmatrix}2.0001\\\\1\\end{bmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", True),
    ("\\begin{pmatrix}2.0001\\\\1\\end{pmatrix}", "\\begin{bmatrix}2\\\\1\\end{pmatrix}", True),
    ("\\begin{pmatrix}x+1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1+x\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix}1&2.0001\\\\3&4\\end{pmatrix}", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", True),
    ("\\begin{pmatrix}1.0001\\\\2\\\\\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),  # a blank row
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\\\3\\end{pmatrix}", False),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", False),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3\\end{pmatrix}", False),
    ("\\begin{pmatrix}1.0001&2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", False),
    ("\\begin{pmatrix}2.0001\\\\1\\end{pmatrix}", "\\begin{pmatrix}2\\\\1", False),
    ("\\begin{pmatrix}2.0001\\\\1", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
    ("\\begin{pmatrix}2.0001\\\\1\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{vmatrix}", False),
    ("\\begin{vmatrix}2.0001\\\\1\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
]

# pairs where math_paper answers otherwise on purpose: (prediction, gold) -> (our answer, why)
DIFFERS_FROM_REFERENCE = {
    ("0.5", "\\sin(\\frac{\\pi}{6})"): (True, "math-verify reads \\pi as the constant, latex2sympy as a symbol"),
    ("0.5", "\\sin\\frac{\\pi}{6}"): (True, "math-verify reads \\pi as the constant, latex2sympy as a symbol"),
    ("10^{400}", "10^{401}"): (False, "the reference's floats overflow to inf, and inf == inf; deft needs finite ones"),
}


@pytest.mark.parametrize("pred, gold, reference", REFERENCE_EQUALITY, ids=lambda v: str(v))
def test_math_equal_follows_the_reference_grader(pred, gold, reference):
    expected, _why = DIFFERS_FROM_REFERENCE.get((pred, gold), (reference, ""))
    assert math_equal_paper(pred, gold) is expected


def test_every_recorded_difference_is_in_the_table():
    pairs = {(p, g): r for p, g, r in REFERENCE_EQUALITY}
    for pair, (ours, _why) in DIFFERS_FROM_REFERENCE.items():
        assert pairs[pair] is not ours


def test_the_numeric_step_scores_through_extraction():
    # (1/3 - 0.3333) / (1/3) = 1e-4, at the tolerance (equal, as in the reference); 0.333 is 1e-3 off
    assert score("math_paper", "so the answer is \\boxed{0.3333}", "\\frac{1}{3}") == 1.0
    assert score("math_paper", "so the answer is \\boxed{0.333}", "\\frac{1}{3}") == 0.0
    assert score("math_paper", "\\boxed{1.4142}", "\\sqrt{2}") == 1.0
    assert score("math_paper", "\\boxed{3.1416}", "\\pi") == 0.0   # the reference's \pi is a symbol


def test_the_numeric_step_keeps_the_three_second_limit(record_calls):
    """One limit of 3 s for the comparison, also given to each numeric evaluation."""
    limits = record_calls(scorers_math, "timeout_seconds")
    evaluations = record_calls(math_verify.utils, "timeout")
    assert math_equal_paper("1.4142", "\\sqrt{2}") is True
    assert limits == [3.0]
    assert evaluations == [3, 3]
