"""Tests of deft.text: the plain-text helpers shared by the data and evaluation layers."""

import ast
from pathlib import Path

import pytest

from deft.text import extract_boxed


@pytest.mark.parametrize("text, expected", [
    ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}", "\\left(3, \\frac{\\pi}{2}\\right)"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("first \\boxed{3}, then \\boxed{27}", "27"),
    ("\\boxed{3} and a truncated \\boxed{\\frac{1", "3"),
    ("\\boxed{\\boxed{7}}", "7"),
    ("$\\boxed 5$", "5"),
    ("\\fbox{12}", "12"),
    ("no box", None),
    ("", None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_extract_boxed_nested_and_last():
    assert extract_boxed(r"so $\boxed{\frac{1}{2}}$") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{1} then \boxed{ {a}_{b} + \sqrt{2} }") == r"{a}_{b} + \sqrt{2}"
    assert extract_boxed(r"\fbox{x^{2}}") == "x^{2}"
    assert extract_boxed(r"answer \boxed 7 done") == "7"
    assert extract_boxed("no answer") is None
    assert extract_boxed(r"\boxed{unclosed") is None


def test_data_and_eval_take_extract_boxed_from_here():
    """deft.data imports nothing of deft.eval (the one arrow back up between the layers is gone)."""
    data = Path(__file__).resolve().parent.parent / "src" / "deft" / "data"
    for path in sorted(data.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not module.startswith(("..eval", "deft.eval")), f"{path.name} imports {module}"
