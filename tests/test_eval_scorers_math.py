"""Tests of deft.eval.scorers_math: the ``math`` scorer: final answers compared as numbers or, failing
that, with ``math-verify``."""

import pytest

from deft.eval import math_equal
from deft.eval.scorers import parse_number


@pytest.mark.parametrize("pred, gold, expected", [
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac12", "0.5", True),
    # percentages: with % on either side, X% matches X and X/100; without, 50 and 0.5 differ
    ("50\\%", "0.5", True),
    ("0.5", "50\\%", True),
    ("50", "50\\%", True),
    ("50\\%", "50", True),
    ("50 percent", "0.5", True),
    ("50", "0.5", False),
    ("5\\%", "50\\%", False),
    # plain numbers: integers exact, decimals within a relative 1e-4
    ("27.0", "27", True),
    ("4495.3", "4495", False),
    ("3.1416", "3.14159", True),
    ("1{,}000", "1000", True),
    ("1.3e-27", "1.3 \\times 10^{-27}", True),
    ("5e-27", "1.325e-27", False),
    ("9 \\times 10^{-34}", "6.6 \\times 10^{-34}", False),
    # structures
    ("(1, 2]", "(1,2]", True),
    ("[1,2]", "(1,2]", False),
    ("\\{2,1\\}", "\\{1,2\\}", True),
    ("\\{1,3\\}", "\\{1,2\\}", False),
    ("B", "\\text{(B)}", True),
    ("\\text{(D)}", "\\text{(B)}", False),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}", True),
    ("3", "x=3", True),
    ("x=4", "x=3", False),
    ("2x", "2", False),
    ("(x+1)^2", "x^2+2x+1", True),
    ("", "1", False),
    (None, "1", False),
])
def test_math_equal(pred, gold, expected):
    assert math_equal(pred, gold) is expected


def test_parse_number():
    assert parse_number("\\$1,234.50") == (1234.5, False, False)
    assert parse_number("12\\%") == (12.0, True, True)
    assert parse_number("75^\\circ") == (75.0, False, True)
    assert parse_number("3 \\text{ cm}^2") == (3.0, False, True)
    assert parse_number("\\frac{1}{2}") is None
    assert parse_number("2x") is None
