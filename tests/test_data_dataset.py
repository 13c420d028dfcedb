"""Tests of deft.data.dataset: a whole file of records, validated and tokenised into a memory-mapped HF
``datasets.Dataset``."""

import json

import pytest

from deft.data import DataError, tokenize_record, tokenize_to_dataset

from data_tokenize_helpers import REC


def test_tokenize_to_dataset_streams_to_arrow(smollm2_tokenizer, tmp_path):
    tok = smollm2_tokenizer
    path = tmp_path / "d.jsonl"
    rows = [REC, {"prompt": "x", "response": ""}, dict(REC, prompt="Hi", weight=0.5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="1 invalid record in"):
        tokenize_to_dataset(str(path), tok)
    ds, report = tokenize_to_dataset(str(path), tok, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert len(ds) == 2 and report.invalid == 1 and report.valid == 2
    assert ds[0]["input_ids"] == tokenize_record(REC, tok).input_ids and ds[0]["weights"] is None
    assert ds[1]["where"] == f"{path}:3" and max(ds[1]["weights"]) == 0.5
