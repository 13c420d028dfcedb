"""Scorers and answer extraction on real answer formats."""

import json
import threading
from pathlib import Path

import pytest

from deft.eval import score
from deft.eval.scorers import SCORERS, check_scorer, extracted_answer

DATA = Path(__file__).parent / "data" / "eval"


MATH_CASES = [json.loads(ln) for ln in (DATA / "math_cases.jsonl").read_text().splitlines() if ln.strip()]


@pytest.mark.parametrize("case", MATH_CASES, ids=[f"{c['source']}-{i}" for i, c in enumerate(MATH_CASES)])
def test_math_scorer_on_benchmark_style_answers(case):
    assert score("math", case["response"], case["reference"]) == case["expected"]


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


def test_mcq_scorer():
    assert score("mcq", "The answer is (C).", "C") == 1.0
    assert score("mcq", "The answer is (C).", "(C)") == 1.0
    assert score("mcq", "The answer is (C).", "C. Hypertension") == 1.0
    assert score("mcq", "The answer is (B).", "C") == 0.0
    assert score("mcq", "The answer is B or C.", "C") == 0.0
    assert score("mcq", "The answer is E.", "D", letters="ABCD") == 0.0  # E is not an option
    with pytest.raises(ValueError, match="option letters"):
        score("mcq", "C", "Hypertension", letters="ABCD")


def test_exact():
    assert score("exact", "  Hello \n", "HELLO") == 1.0
    assert score("exact", "HELL0", "HELLO") == 0.0
    assert score("exact", None, "HELLO") == 0.0


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
