"""The trainer on a tiny random Llama with the embedded tokenizer and real figfont records."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deft.cli.main import main
from deft.train import load_config, train
from deft.train.run import build_examples
from deft.train.rundir import latest_checkpoint

from train_options_helpers import _csv, _quiet
from train_run_helpers import cfg_for


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _train_cmd(tiny_model_dir, data, out, *extra):
    return [sys.executable, "-m", "deft.cli.main", "train", "--model", str(tiny_model_dir), "--data", str(data),
            "--output-dir", str(out), "--max-length", "256", "--lr", "1e-3", "--batch-size", "2",
            "--max-steps", "6", "--save-steps", "1", "--save-total-limit", "10", "--seed", "5", "--no-progress",
            "--objective", "cayley", *extra]


def test_training_writes_metrics_checkpoints_and_a_loadable_final_model(tiny_model_dir, figfont_records, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    summary = train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=3, batch_size=4, save_steps=2,
                            objective="deft"), log=lambda *_: None)
    assert summary["steps"] == 3
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mean_p", "mean_gate", "mean_entropy",
                "frac_p_below_1e-3", "frac_p_above_0.5", "mean_focus"):
        assert key in rows[0], key
    assert all(r["tokens"] > 0 and 0 <= r["mean_p"] <= 1 and 0 < r["mean_focus"] <= 1 for r in rows)
    assert (out / "config.yaml").exists() and (out / "checkpoint-2").is_dir() and (out / "checkpoint-3").is_dir()
    assert not (out / ".staging").exists()
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    tok = AutoTokenizer.from_pretrained(out / "final")
    assert model.config.vocab_size == len(tok)
    assert (out / "final" / "model.safetensors").exists()


def test_one_microbatch_of_8_equals_8_microbatches_of_1(tiny_model_dir, figfont_records, tmp_path):
    """Loss normalised by the loss tokens of the whole optimizer step: same loss, same gradient
    norm, same update."""
    runs = {}
    for name, bs, ga in (("1x8", 8, 1), ("8x1", 1, 8)):
        out = tmp_path / name
        train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=1, batch_size=bs, grad_accum=ga,
                      max_grad_norm=0, warmup_ratio=0, objective="deft"), log=lambda *_: None)
        runs[name] = (metrics(out)[0], load_file(out / "final" / "model.safetensors"))
    (m1, w1), (m8, w8) = runs["1x8"], runs["8x1"]
    assert m1["tokens"] == m8["tokens"]
    assert m1["loss"] == pytest.approx(m8["loss"], rel=1e-5)
    assert m1["grad_norm"] == pytest.approx(m8["grad_norm"], rel=1e-4)
    for key in w1:
        # AdamW's first step is lr * g / (|g| + eps): tiny gradients near eps amplify rounding
        torch.testing.assert_close(w1[key], w8[key], rtol=1e-4, atol=1e-5)


def test_labels_cover_the_response_and_end_of_turn_after_the_shift(tiny_model_dir, figfont_records):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = cfg_for(tiny_model_dir, figfont_records, "/unused")
    ex = build_examples(cfg, tok, str(figfont_records), log=lambda *_: None)[0]
    record = json.loads(Path(figfont_records).read_text().splitlines()[0])
    ids, labels = torch.tensor(ex["input_ids"]), torch.tensor(ex["labels"])
    targets = labels[1:][labels[1:] != -100]  # what the positions before them are trained to predict
    assert tok.decode(targets) == record["response"] + "<|im_end|>"
    first = int((labels != -100).nonzero()[0])
    assert tok.decode(ids[:first]).endswith("<|im_start|>assistant\n")


def in_this_process_with_one_thread(argv: list[str]) -> int:
    """``deft`` in this process with the killed run's one torch thread (same summation order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def test_resume_after_sigkill_continues_exactly(tiny_model_dir, figfont_records, tmp_path, capsys):
    """A separate process SIGKILLed after its checkpoint 3; ``--resume`` (here, in this process)
    ends with the losses of the uninterrupted run at every step."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = tmp_path / "ref"
    assert in_this_process_with_one_thread(_train_cmd(tiny_model_dir, figfont_records, ref)[3:]) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(tiny_model_dir, figfont_records, out), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoint-3" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest_checkpoint(str(out)) is not None
    assert not (out / "final").exists()
    capsys.readouterr()
    assert in_this_process_with_one_thread(_train_cmd(tiny_model_dir, figfont_records, out, "--resume")[3:]) == 0
    assert "resuming from" in capsys.readouterr().out
    a, b = metrics(ref), metrics(out)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-6, abs=1e-7), (ra["step"], ra["loss"], rb["loss"])


def test_psft_resume_restores_the_old_policy_snapshot(tiny_model_dir, figfont_records, tmp_path):
    """psft's old policy (refreshed every 2 steps) is saved with each checkpoint: 3 steps, then
    a resume to 6, gives the losses of 6 uninterrupted steps; without the snapshot they differ."""
    kw = dict(objective="psft:eps_low=0.05,eps_high=0.05", old_policy_refresh=2, batch_size=2, save_steps=3,
              lr=5e-3, lr_scheduler="constant", warmup_ratio=0.0)
    ref = tmp_path / "ref"
    train(cfg_for(tiny_model_dir, figfont_records, ref, max_steps=6, **kw), log=lambda *_: None)
    assert (ref / "checkpoint-3" / "old_policy.safetensors").exists()
    losses = {}
    for name, keep_snapshot in (("resumed", True), ("no_snapshot", False)):
        out = tmp_path / name
        train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=3, **kw), log=lambda *_: None)
        shutil.rmtree(out / "final")  # as if stopped after checkpoint-3 (a finished run is not resumed)
        if not keep_snapshot:
            (out / "checkpoint-3" / "old_policy.safetensors").unlink()
        train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=6, resume=True, **kw), log=lambda *_: None)
        losses[name] = [r["loss"] for r in metrics(out)]
    expected = [r["loss"] for r in metrics(ref)]
    assert losses["resumed"] == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert losses["no_snapshot"][3:] != pytest.approx(expected[3:], rel=1e-6, abs=1e-7)


def test_map_renames_csv_columns_for_training_and_eval(tiny_model_dir, tiny_tokenizer, tmp_path):
    from deft.train.run import build_examples

    rows = [{"question": "What is 2+2?", "answer": "four"}, {"question": "Capital of France?", "answer": "Paris"}]
    data = _csv(tmp_path / "qa.csv", rows)
    cfg = load_config(None, {"model": str(tiny_model_dir), "map": "prompt=question,response=answer",
                             "template": "plain", "max_length": 64})
    examples = list(build_examples(cfg, tiny_tokenizer, str(data), log=_quiet))
    # the response tokens are the answer column's text + EOS, the prompt is the question column's
    for ex, row in zip(examples, rows):
        target = [t for t, label in zip(ex["input_ids"], ex["labels"]) if label != -100]
        assert target == tiny_tokenizer(row["answer"], add_special_tokens=False)["input_ids"] + \
            [tiny_tokenizer.eos_token_id]
        prompt = tiny_tokenizer.decode([t for t, label in zip(ex["input_ids"], ex["labels"]) if label == -100])
        assert row["question"] in prompt and row["answer"] not in prompt
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny_model_dir), "--data", str(data), "--eval-data", str(data),
                 "--map", "prompt=question,response=answer", "--out", str(out), "--max-steps", "1",
                 "--batch-size", "2", "--no-progress", "--template", "plain", "--objective", "nll"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["eval_loss"] > 0


def test_protocol_paper_with_model_key_uses_the_qwen_literal_prompt(tiny_model_dir, tiny_tokenizer, tmp_path):
    from deft.data.paper import FIGFONT_PAPER_SYSTEM, figfont_paper_records
    from deft.data.templates import PAPER_STRINGS
    from deft.train.run import build_examples

    _, record = next(figfont_paper_records("train", n=1))
    data = tmp_path / "ff.jsonl"
    data.write_text(json.dumps(record) + "\n")
    cfg = load_config(None, {"model": str(tiny_model_dir), "protocol": "paper", "model_key": "qwen-2.5-1.5b",
                             "max_length": 4096})
    assert (cfg.template, cfg.resolved_template()) == ("paper", "paper:qwen")
    [ex] = list(build_examples(cfg, tiny_tokenizer, str(data), log=_quiet))
    literal = ("<|im_start|>system\n" + FIGFONT_PAPER_SYSTEM + "<|im_end|>\n<|im_start|>user\n" + record["prompt"]
               + "\n<|im_end|>\n<|im_start|>assistant\n")
    assert literal == PAPER_STRINGS[("qwen", "figfont")].format(system=FIGFONT_PAPER_SYSTEM, prompt=record["prompt"])
    prompt_ids = tiny_tokenizer(literal, add_special_tokens=False)["input_ids"]
    response_ids = tiny_tokenizer(record["response"], add_special_tokens=False)["input_ids"] + \
        [tiny_tokenizer.eos_token_id]
    assert ex["input_ids"] == prompt_ids + response_ids
    assert ex["labels"] == [-100] * len(prompt_ids) + response_ids
