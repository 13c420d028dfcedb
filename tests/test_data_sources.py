"""Sources: FigFont and reasoning-gym generation (real reasoning-gym), math and medical rows, mixes."""

from collections import Counter

import pytest

from deft.data import mix_records, source_records

from data_sources_helpers import _records, _write_jsonl


def test_mix_proportions_and_seed(tmp_path):
    src = _write_jsonl(tmp_path / "own.jsonl",
                       [{"prompt": f"p{i}", "response": f"r{i}", "task": "own"} for i in range(20)])
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
