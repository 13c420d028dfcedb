"""Tests of deft.data.sources_medical: medical multiple-choice rows (``medical``): m23K-style
``question``, ``options``, ``answer_idx`` letter, optional ``reasoning``; the response is the
reasoning then ``The answer is \boxed{X}.`` (The reference's medical records are ``--protocol
paper``: :mod:`deft.data.paper`.)."""

from deft.data import RecordError, medical_records

from data_sources_helpers import _write_jsonl


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
