"""Tests of deft.eval.extract: answer extraction from free-form model output: boxed math answers,
option letters, tagged answers."""

import pytest

from deft.eval import extract_boxed, extract_choice, extract_math_answer


def test_extract_boxed_is_the_shared_one():
    from deft import text

    assert extract_boxed is text.extract_boxed  # one parser for gold answers (deft.data) and predictions


@pytest.mark.parametrize("text, expected", [
    ("Thus \\boxed{42}. The answer is 41.", "42"),
    ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("The answer is 3.5. Next question.", "3.5"),
    ("**Answer:** 70,000", "70,000"),
    ("Final Answer: The final answer is $18$. I hope it is correct.", "18"),
    ("The total is 18.", None),
])
def test_extract_math_answer(text, expected):
    assert extract_math_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("The answer is (C).", "C"),
    ("Therefore, the answer is:\n\n**B**", "B"),
    ("**C.** Hypertension", "C"),
    ("C) Inhibition of cyclooxygenase", "C"),
    ("Let us think step by step.\n...\nC", "C"),
    ("Answer: option D", "D"),
    ("The correct option is C. Option A is wrong because it is B-cell mediated.", "C"),
    ("Among the options, (C) is the best answer.", "C"),
    ("the answer is (c)", "C"),
    ("\\boxed{\\text{(D)}}", "D"),
    ("I first thought A. The answer is B, because A is a distractor.", "B"),
    ("The answer to this question is D.", "D"),
    ("The answer is D. Checking the others: A is correct only for children.", "D"),
    # several letters named: wrong
    ("The answer is A and C", None),
    ("Answer: B, D", None),
    ("The answer is C or D", None),
    ("Both A and C are correct.", None),
    ("\\boxed{A, C}", None),
    # no choice
    ("The answer is Aspirin", None),
    ("Option A is wrong because it is B-cell mediated.", None),
    ("A. 5\nB. 6\nC. 7", None),
    ("", None),
])
def test_extract_choice(text, expected):
    assert extract_choice(text, "ABCDE") == expected


@pytest.mark.parametrize("text, expected", [
    ("Final answer: c", "C"),
    ("final answer: (b).", "B"),
    ("I would pick B) because it blocks cyclooxygenase.", "B"),
    ("So C) Paracetamol is my pick.", "C"),
    ("Final answer: a drug", None),                 # an article, not a letter
    ("Between B) and D) I cannot decide.", None),  # several letters named: wrong
    ("Option A is wrong because it is B-cell mediated.", None),
])
def test_mcq_widened(text, expected):
    assert extract_choice(text, "ABCDE") == expected
