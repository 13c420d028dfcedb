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


def _shout(prediction, reference, *, letters=None):
    """A scorer declared by the test: 1 when the prediction, upper-cased, equals the reference."""
    return float(prediction is not None and prediction.strip().upper() == reference)


def test_one_declaration_registers_a_scorer_everywhere(tmp_path, capsys):
    from deft.cli.main import main
    from deft.eval import evaluate, format_table, list_scorers, register_scorer, scorer_names, unregister_scorer

    from eval_protocol_helpers import Scripted

    register_scorer("shout", _shout, "upper-cased prediction equals the reference", keywords=("letters",),
                    extractor=lambda p, letters=None: p.strip().upper() or None, report_columns=("shout",),
                    max_new_tokens=7)
    try:
        with pytest.raises(SystemExit):
            main(["eval", "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert "shout upper-cased prediction equals the reference" in help_text
        assert list_scorers()["shout"] == "upper-cased prediction equals the reference"
        assert "shout" in scorer_names() and check_scorer("shout") == "shout"
        assert score("shout", " hi ", "HI", letters="AB") == 1.0 and score("shout", "ho", "HI") == 0.0
        assert extracted_answer("shout", " hi ") == "HI"
        records = tmp_path / "words.jsonl"
        records.write_text('{"prompt": "say hi", "answer": "HI"}\n{"prompt": "say yo", "answer": "YO"}\n')
        backend = Scripted(lambda text, _: "hi")
        res = evaluate("smollm2-135m", [str(records)], scorer="shout,exact", backend=backend, print_table=False,
                       progress=False)
        assert res["words"]["scorer"] == "shout" and res["words"]["shout"] == 0.5
        assert backend.calls[0]["max_new_tokens"] == 7  # the declared generation budget
        header = format_table(res).splitlines()[0].split()
        assert "shout" in header and "exact" in header
    finally:
        unregister_scorer("shout")
    assert "shout" not in scorer_names()
    with pytest.raises(ValueError, match="unknown scorer 'shout'"):
        score("shout", "hi", "HI")


def test_the_builtin_scorers_are_declared_once():
    from deft.eval.scorers import PAPER_SCORERS, SCORER_REGISTRY, report_columns

    assert SCORERS == tuple(s.spec for s in SCORER_REGISTRY.values())
    assert PAPER_SCORERS == ("exact_paper", "exact_normalized_paper", "jaro_winkler_paper", "math_paper", "mcq_paper")
    assert set(report_columns()) == {"acc", "mean_acc", "exact", "jaro_winkler", "score", "normalized_score",
                                     "jaro_winkler_similarity"}
    with pytest.raises(ValueError, match="already registered"):
        from deft.eval import register_scorer

        register_scorer("math", _shout, "again")
