"""Tests of deft.eval.self_answers: a model's own answers as training records, kept only when they
are complete (generation stopped before the cap) and correct (the task's own verifier)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_model

from deft.data.sources import source_records
from deft.eval.generate import Generation
from deft.eval.self_answers import keep_self_answers, rg_record_score, self_answer_set

STRONG_SET = Path(__file__).resolve().parent.parent / "docs" / "results" / "regimes" / "strong_set.py"


def _records(task="rg:letter_counting", n=20):
    return [rec for _, rec in source_records(task, n=n, seed=0, split="train")]


def _bigram_model(tokenizer, chain):
    """A model whose next token depends only on the current one: ``chain`` maps a token to the
    next. Every layer is zero, so the residual stream is the current token's embedding (a one-hot
    in its own dimension), which the LM head reads out as the next token."""
    model = tiny_model(vocab_size=len(tokenizer), tie_word_embeddings=False).eval()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for pair in chain.items() for t in pair}
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.norm.weight.fill_(1.0)
        for dim, (cur, nxt) in enumerate(chain.items()):
            model.model.embed_tokens.weight[ids[cur], dim] = 1.0
            model.lm_head.weight[ids[nxt], dim] = 100.0
    return model


def test_rg_record_score_is_the_task_verifier():
    rec = _records(n=1)[0]
    assert rg_record_score(rec, rec["answer"]) == 1.0
    assert rg_record_score(rec, f"Counting... <answer>{rec['answer']}</answer>") == 1.0
    assert rg_record_score(rec, str(int(rec["answer"]) + 1)) == 0.0
    with pytest.raises(ValueError, match="not from a reasoning-gym source"):
        rg_record_score({"prompt": "q", "answer": "a", "task": "mine"}, "a")


def test_keep_self_answers_counts_cut_empty_wrong_and_keeps_complete_correct_ones():
    recs = _records(n=5)
    gens = [Generation(recs[0]["answer"], 2, False),  # right text, but cut by the cap
            Generation("  ", 1, True),
            Generation("no idea", 3, True),
            Generation(recs[3]["answer"], 2, True),
            Generation(f"<answer>{recs[4]['answer']}</answer>", 9, True)]
    kept, counts = keep_self_answers(recs, gens)
    assert counts == {"drawn": 5, "cut": 1, "empty": 1, "wrong": 1, "correct": 2, "kept": 2}
    assert [k["id"] for k in kept] == [recs[3]["id"], recs[4]["id"]]
    assert kept[1]["response"] == f"<answer>{recs[4]['answer']}</answer>" and kept[1]["answer"] == recs[4]["answer"]
    assert all(k["source"] == "self-answers" for k in kept)
    with pytest.raises(ValueError, match="5 records but 1 generations"):
        keep_self_answers(recs, gens[:1])


def test_self_answer_set_draws_until_n_complete_correct_answers(tiny_tokenizer):
    recs = _records(n=20)
    # after the prompt's last token (the newline of 'assistant\n') the model writes '1' then <|im_end|>
    model = _bigram_model(tiny_tokenizer, {"Ċ": "1", "1": "<|im_end|>"})
    kept, counts = self_answer_set(model, tiny_tokenizer, recs, 3, max_new_tokens=8, batch_size=4)
    ones = [r["id"] for r in recs if r["answer"] == "1"]
    assert len(ones) > 3 and [k["id"] for k in kept] == ones[:3] and all(k["response"] == "1" for k in kept)
    drawn = counts["drawn"]
    assert drawn % 4 == 0 and counts["cut"] == counts["empty"] == 0 and counts["kept"] == 3
    assert counts["correct"] == sum(r["answer"] == "1" for r in recs[:drawn]) >= 3
    assert counts["wrong"] == drawn - counts["correct"]
    # a cap of one token cuts every answer: all records are drawn and none kept
    kept, counts = self_answer_set(model, tiny_tokenizer, recs, 3, max_new_tokens=1, batch_size=8)
    assert kept == [] and counts == {"drawn": 20, "cut": 20, "empty": 0, "wrong": 0, "correct": 0, "kept": 0}
    empty = _bigram_model(tiny_tokenizer, {"Ċ": "<|im_end|>"})
    kept, counts = self_answer_set(empty, tiny_tokenizer, recs[:5], 2, max_new_tokens=8)
    assert kept == [] and counts["empty"] == 5


def _strong_set_script(tiny_tokenizer, tmp_path):
    """``(strong_set.py as a module, a saved bigram model answering '1' then end of turn)``."""
    model_dir = tmp_path / "bigram"
    _bigram_model(tiny_tokenizer, {"Ċ": "1", "1": "<|im_end|>"}).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    spec = importlib.util.spec_from_file_location("strong_set", STRONG_SET)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script, model_dir


def test_strong_set_script_writes_kept_records_and_counts(tiny_tokenizer, tmp_path, capsys):
    script, model_dir = _strong_set_script(tiny_tokenizer, tmp_path)
    out = tmp_path / "strong.train.jsonl"
    script.main([str(model_dir), "2", "train", "0", str(out), "--max-draw", "40", "--max-new-tokens", "8",
                 "--batch-size", "4"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(r["response"] == "1" == r["answer"] for r in rows)
    assert all(r["task"] == "rg:letter_counting" and r["source"] == "self-answers" for r in rows)
    meta = json.loads((tmp_path / "strong.train.meta.json").read_text())
    c = meta["counts"]
    assert c["kept"] == 2 and c["drawn"] == c["cut"] + c["empty"] + c["wrong"] + c["correct"] and c["wrong"] > 0
    assert meta["settings"]["max_new_tokens"] == 8 and meta["settings"]["max_draw"] == 40
    assert meta["per_task"]["rg:letter_counting"]["kept"] == 2
    assert meta["per_task"]["rg:basic_arithmetic"]["drawn"] == c["drawn"] // 2  # the tasks alternate
    said = capsys.readouterr().out
    assert f"kept 2 of {c['drawn']} answers drawn: 0 cut at 8 tokens" in said
    # too few to keep: the script says how many it kept
    script.main([str(model_dir), "5", "train", "0", str(out), "--max-draw", "6", "--max-new-tokens", "8"])
    assert "(fewer than the 5 asked: raise --max-draw)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main([str(model_dir), "0", "train", "0", str(out)])
    assert "N must be >= 1, got 0" in capsys.readouterr().err


def test_strong_set_every_answer_rebuilds_the_committed_rule(tiny_tokenizer, tmp_path, capsys):
    """--every-answer (what run.sh uses for the committed tables): the first N/2 problems per task,
    every non-empty answer kept, wrong ones included; no counts file."""
    script, model_dir = _strong_set_script(tiny_tokenizer, tmp_path)
    out = tmp_path / "strong.train.jsonl"
    script.main([str(model_dir), "4", "train", "0", str(out), "--every-answer", "--max-new-tokens", "8"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all(r["response"] == "1" for r in rows)
    assert not (tmp_path / "strong.train.meta.json").exists()
    assert "wrote 4 records (0 empty answers dropped)" in capsys.readouterr().out
    run_sh = (STRONG_SET.parent / "run.sh").read_text()
    assert run_sh.count("--every-answer --max-new-tokens 64") == 2  # the committed set's rule and cap
