"""Tests of deft.eval.medical: the medical suite: the m1 evaluation file behind the paper's Table 2."""

import json

import pytest

from deft.eval import read_medical

from eval_protocol_helpers import DATA


@pytest.mark.parametrize("shape", ["m1_dict.json", "m1_list.json"])
def test_medical_reader_both_shapes(shape):
    groups = read_medical(DATA / shape)
    assert list(groups) == ["MedQA", "PubMedQA"]
    assert [len(v) for v in groups.values()] == [2, 3]
    p = groups["PubMedQA"][1]
    assert p.benchmark == "medical/PubMedQA" and p.reference == "B" and p.scorers == ("mcq",)
    assert p.context == {"options": {"A": "yes", "B": "no", "C": "maybe"}}
    assert p.prompt.startswith("Is smoking protective") and p.prompt.endswith("within \\boxed{}.")
    assert [len(v) for v in read_medical(DATA / shape, limit=1).values()] == [1, 1]


def test_medical_reader_errors(tmp_path):
    bad = tmp_path / "m1.json"
    bad.write_text(json.dumps({"MedQA": [{"prompt": "q", "options": {"A": "x"}, "answer_idx": "B"}]}))
    with pytest.raises(ValueError, match=r"MedQA item 0: answer_idx 'B' is not one of the options"):
        read_medical(bad)
    bad.write_text(json.dumps([{"prompt": "q", "answer_idx": "A"}]))
    with pytest.raises(ValueError, match=r"missing field\(s\) \['options'\]"):
        read_medical(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="m1.json:1: not valid JSON"):
        read_medical(bad)
