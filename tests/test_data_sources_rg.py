"""Tests of deft.data.sources_rg: generated sources: any reasoning-gym task (``rg:<task>``) and FigFont
(``figfont``), with deft's train/test split, and scoring with the task's own verifier."""

import pytest

from deft.data import FIGFONT_SYSTEM_PROMPT, figfont_records, question_split, rg_records, rg_score, write_jsonl

from data_sources_helpers import _records


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
