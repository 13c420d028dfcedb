"""Scorers and answer extraction on real answer formats."""

import json
import threading
from pathlib import Path

import pytest

from deft.eval import extract_boxed, extract_choice, extract_math_answer, math_equal, score
from deft.eval.scorers import SCORERS, check_scorer, extracted_answer, is_inert_expression, parse_number

DATA = Path(__file__).parent / "data" / "eval"
MATH_CASES = [json.loads(ln) for ln in (DATA / "math_cases.jsonl").read_text().splitlines() if ln.strip()]


# ---------------------------------------------------------------- math


@pytest.mark.parametrize("case", MATH_CASES, ids=[f"{c['source']}-{i}" for i, c in enumerate(MATH_CASES)])
def test_math_scorer_on_benchmark_style_answers(case):
    assert score("math", case["response"], case["reference"]) == case["expected"]


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


def test_math_reference_forms():
    # a full solution as reference is reduced to its box; a GSM8K solution to its #### number
    assert score("math", "\\boxed{18}", "She makes 9 * 2 = $18.\n#### 18") == 1.0
    assert score("math", "\\boxed{1.6}", "s = \\boxed{1.6} \\mathrm{~cm}") == 1.0
    assert score("math", "\\boxed{2}", ["1", "2"]) == 1.0
    assert score("math", None, "2") == 0.0
    assert score("math", "no final answer here, 2", "2") == 0.0


def test_math_time_limit_and_threads():
    # without the time limit this comparison would not finish
    assert score("math", "\\boxed{9^{9^{9^{9}}}}", "1", timeout=1) == 0.0
    out = []
    th = threading.Thread(target=lambda: out.append(score("math", "\\boxed{\\frac{1}{2}}", "0.5")))
    th.start()
    th.join(30)
    assert out == [1.0]  # no signal-based limit outside the main thread, and no error


# ---------------------------------------------------------------- extraction


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


# ---------------------------------------------------------------- multiple choice


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


def test_mcq_scorer():
    assert score("mcq", "The answer is (C).", "C") == 1.0
    assert score("mcq", "The answer is (C).", "(C)") == 1.0
    assert score("mcq", "The answer is (C).", "C. Hypertension") == 1.0
    assert score("mcq", "The answer is (B).", "C") == 0.0
    assert score("mcq", "The answer is B or C.", "C") == 0.0
    assert score("mcq", "The answer is E.", "D", letters="ABCD") == 0.0  # E is not an option
    with pytest.raises(ValueError, match="option letters"):
        score("mcq", "C", "Hypertension", letters="ABCD")


# ---------------------------------------------------------------- exact, jaro-winkler


def test_exact():
    assert score("exact", "  Hello \n", "HELLO") == 1.0
    assert score("exact", "HELL0", "HELLO") == 0.0
    assert score("exact", None, "HELLO") == 0.0


@pytest.mark.parametrize("a, b, value", [
    ("MARTHA", "MARHTA", 0.9611), ("DWAYNE", "DUANE", 0.84), ("DIXON", "DICKSONX", 0.8133),
    ("martha", " MARHTA ", 0.9611), ("ABC", "ABC", 1.0), ("ABC", "XYZ", 0.0),
])
def test_jaro_winkler_known_pairs(a, b, value):
    assert score("jaro_winkler", a, b) == pytest.approx(value, abs=5e-5)


# ---------------------------------------------------------------- reasoning-gym


def test_rg_scorer_uses_task_score_answer():
    import reasoning_gym

    item = reasoning_gym.create_dataset("countdown", size=1, seed=1)[0]
    ans = item["answer"]
    assert score("rg:countdown", f"Reasoning...\n<answer>{ans}</answer>", ans, entry=item) == 1.0
    assert score("rg:countdown", "<answer>1 + 1</answer>", ans, entry=item) < 0.1  # the task's partial credit
    queens = reasoning_gym.create_dataset("n_queens", size=1, seed=1)[0]
    assert score("rg:n_queens", f"<answer>{queens['answer']}</answer>", queens["answer"], entry=queens) == 1.0
    with pytest.raises(ValueError, match="entry"):
        score("rg:n_queens", "<answer>x</answer>", queens["answer"])  # needs metadata


def test_rg_scorer_never_executes_the_answer(tmp_path):
    import reasoning_gym

    item = reasoning_gym.create_dataset("countdown", size=1, seed=1)[0]
    target = tmp_path / "pwned"
    for payload in (f"__import__('os').system('touch {target}')", f"open('{target}', 'w')",
                    f"open('{target}', 'w')!", "(lambda: 1)()", "9**9**9**9"):
        assert score("rg:countdown", f"<answer>{payload}</answer>", item["answer"], entry=item) == 0.0
    assert not target.exists()


@pytest.mark.parametrize("text, ok", [
    ("(3 + 5) * 3", True), ("['a', 'b']", True), ("x**2/2 + C", True), ("sin(x) + sqrt(2)", True),
    ("_ Q _ _\n_ _ Q _", True), ("__import__('os')", False), ("().__class__", False), ("a.b", False),
    ("open('f')", False), ("f'{x}'", False), ("lambda: 1", False), ("9**9**9", False),
    ("'a' * 10**9", False), ("5!", False), ("[x for x in y]", False),
])
def test_is_inert_expression(text, ok):
    assert is_inert_expression(text) is ok


# ---------------------------------------------------------------- dispatch


def test_unknown_scorer_lists_valid_names():
    with pytest.raises(ValueError) as e:
        score("bleu", "a", "b")
    for name in ("math", "mcq", "exact", "jaro_winkler", "rg:<task>"):
        assert name in str(e.value)
    with pytest.raises(ValueError, match="reasoning-gym task"):
        check_scorer("rg:no_such_task")
    assert check_scorer("rg:countdown") == "rg:countdown"
    assert "rg:<task>" in SCORERS


def test_extracted_answer():
    assert extracted_answer("math", "so \\boxed{7}") == "7"
    assert extracted_answer("mcq", "The answer is (B)") == "B"
    assert extracted_answer("exact", " Hello ") == "hello"
    assert extracted_answer("rg:countdown", "x <answer> 1+2 </answer>") == "1+2"
