"""Sources: FigFont and reasoning-gym generation (real reasoning-gym), math and medical rows, mixes."""

import json
from collections import Counter

import pytest

from deft.data import (
    FIGFONT_SYSTEM_PROMPT,
    MATH_PROMPT_SUFFIX,
    RecordError,
    extract_boxed,
    figfont_records,
    math_records,
    medical_records,
    mix_records,
    question_split,
    rg_records,
    rg_score,
    source_records,
    write_jsonl,
)


def _records(items):
    out = []
    for where, rec in items:
        assert not isinstance(rec, RecordError), rec
        out.append(rec)
    return out


def test_figfont_reference_settings_and_determinism(tmp_path):
    recs = _records(figfont_records(n=30, seed=3))
    for rec in recs:
        word = rec["answer"]
        assert rec["response"] == word and word.isupper() and 2 <= len(word) <= 5
        assert rec["system"] == FIGFONT_SYSTEM_PROMPT and rec["task"] == "figfont"
        assert rec["metadata"]["space_letters"] is True
        assert rec["metadata"]["reasoning_gym"]["args"] == {"min_word_len": 2, "max_word_len": 5, "space_letters": True}
        assert question_split(rec["prompt"]) == "train"
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(recs, a)
    write_jsonl(_records(figfont_records(n=30, seed=3)), b)
    assert a.read_bytes() == b.read_bytes()  # same seed, same file
    assert _records(figfont_records(n=30, seed=4)) != recs


def test_figfont_test_split_shares_no_question_with_train():
    train = _records(figfont_records(n=300, seed=0, split="train"))
    test = _records(figfont_records(n=100, seed=0, split="test"))
    assert len(train) == 300 and len(test) == 100
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert all(question_split(r["prompt"]) == "test" for r in test)


def test_rg_task_with_args_and_its_verifier():
    recs = _records(rg_records("basic_arithmetic", n=5, seed=1, task_args={"min_terms": 2, "max_terms": 2}))
    assert len(recs) == 5
    for rec in recs:
        assert rec["task"] == "rg:basic_arithmetic" and rec["metadata"]["num_terms"] == 2
        assert rg_score(rec, rec["answer"]) == 1.0
        assert rg_score(rec, "not a number") < 1.0
    fig = _records(figfont_records(n=2, seed=0))[0]
    assert rg_score(fig, fig["answer"]) == 1.0
    assert rg_score(fig, fig["answer"][::-1] + "X") < 1.0
    with pytest.raises(ValueError, match="unknown reasoning-gym task"):
        list(rg_records("no_such_task", n=1))
    with pytest.raises(ValueError, match="bad --task-args"):
        list(rg_records("basic_arithmetic", n=1, task_args={"nope": 1}))


def test_extract_boxed_nested_and_last():
    assert extract_boxed(r"so $\boxed{\frac{1}{2}}$") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{1} then \boxed{ {a}_{b} + \sqrt{2} }") == r"{a}_{b} + \sqrt{2}"
    assert extract_boxed(r"\fbox{x^{2}}") == "x^{2}"
    assert extract_boxed(r"answer \boxed 7 done") == "7"
    assert extract_boxed("no answer") is None
    assert extract_boxed(r"\boxed{unclosed") is None


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_math_rows(tmp_path):
    src = _write_jsonl(tmp_path / "numina.jsonl", [
        {"problem": "Find $x$.", "solution": r"Hence $x = \boxed{\frac{\sqrt{3}}{2}}$.", "source": "olympiads"},
        {"problem": "Add.", "solution": r"$1+1=\boxed{2}$"},
        {"problem": "Prove.", "solution": "Done."},
        {"question": "Q", "output": r"\boxed{5}"},
    ])
    items = list(math_records(src))
    rec = items[0][1]
    assert rec["prompt"] == f"Find $x$.\n{MATH_PROMPT_SUFFIX}"
    assert rec["response"] == r"Hence $x = \boxed{\frac{\sqrt{3}}{2}}$."
    assert rec["answer"] == r"\frac{\sqrt{3}}{2}" and rec["task"] == "math"
    assert isinstance(items[2][1], RecordError) and items[2][0].endswith("numina.jsonl:3")
    assert "no \\boxed" in str(items[2][1])
    assert "missing 'problem'" in str(items[3][1])
    only = [r for _, r in math_records(src, key_map=["problem=question", "solution=output"])]
    assert only[3]["answer"] == "5" and all(isinstance(r, RecordError) for r in only[:3])
    sample = [r["answer"] for _, r in math_records(src, n=1, seed=0) if not isinstance(r, RecordError)]
    assert len(sample) == 1


def test_medical_rows(tmp_path):
    src = _write_jsonl(tmp_path / "m23k.jsonl", [
        {"id": "a", "question": "Which vitamin is made in skin?", "answer": "Vitamin D", "reasoning": "UV light.",
         "options": "{'A': 'Vitamin C', 'B': 'Vitamin D', 'C': 'Vitamin K'}", "answer_idx": "B"},
        {"question": "Pick one", "options": ["alpha", "beta"], "answer_string": "beta"},
        {"prompt": "Q?\nA. x\nB. y", "answer_letter": "A"},
        {"question": "Bad", "options": {"A": "x", "B": "y"}, "answer_idx": "E"},
    ])
    items = list(medical_records(src))
    a = items[0][1]
    assert a["prompt"].startswith("Which vitamin is made in skin?\n\nA. Vitamin C\nB. Vitamin D\nC. Vitamin K\n\n")
    assert a["response"] == "UV light.\n\nThe answer is \\boxed{B}."
    assert (a["answer"], a["id"], a["task"], a["metadata"]["answer_text"]) == ("B", "a", "medical", "Vitamin D")
    assert items[1][1]["answer"] == "B" and items[1][1]["response"] == "The answer is \\boxed{B}."
    assert items[2][1]["answer"] == "A" and items[2][1]["prompt"].startswith("Q?\nA. x\nB. y")
    assert isinstance(items[3][1], RecordError) and "'E' is not one of the options A, B" in str(items[3][1])


def test_mix_proportions_and_seed(tmp_path):
    src = _write_jsonl(tmp_path / "own.jsonl", [{"prompt": f"p{i}", "response": f"r{i}", "task": "own"} for i in range(20)])
    parts = [("figfont", 0.5), (src, 0.3), ("rg:basic_arithmetic", 0.2)]
    recs = _records(mix_records(parts, n=10, seed=5))
    assert Counter(r["task"] for r in recs) == {"figfont": 5, "own": 3, "rg:basic_arithmetic": 2}
    again = _records(mix_records(parts, n=10, seed=5))
    assert again == recs
    assert [r["task"] for r in recs] != sorted(r["task"] for r in recs)  # shuffled
    with pytest.raises(ValueError, match="only 20 valid records, 30 needed"):
        list(mix_records([(src, 1.0)], n=30))


def test_source_records_dispatch(tmp_path):
    with pytest.raises(ValueError, match="needs --n"):
        source_records("figfont")
    with pytest.raises(ValueError, match="needs an input"):
        source_records("math")
    src = _write_jsonl(tmp_path / "own.jsonl", [{"prompt": "p", "response": "r"}])
    assert _records(source_records(src)) == [{"prompt": "p", "response": "r"}]
    assert _records(source_records("jsonl", input=src)) == [{"prompt": "p", "response": "r"}]
