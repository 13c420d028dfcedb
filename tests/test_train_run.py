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
from deft.model.fused_forward import patch_fused_loss
from deft.train import load_config, train
from deft.train.collate import Collator, pack_examples
from deft.train.rundir import latest_checkpoint
from deft.train.run import build_examples

ROOT = Path(__file__).resolve().parents[1]


def cfg_for(tiny_model_dir, data, out, **kw):
    base = dict(model=str(tiny_model_dir), data=str(data), output_dir=str(out), max_length=256, lr=1e-3,
                progress=False, seed=7)
    base.update(kw)
    return load_config(None, base)


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


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


def test_packing_gives_the_same_loss_as_padding(tiny_model_dir, figfont_records):
    """Packed rows, padded rows and each example on its own give the same summed NLL."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = cfg_for(tiny_model_dir, figfont_records, "/unused")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = list(build_examples(cfg, tok, str(figfont_records), log=lambda *_: None).select(range(6)))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    patch_fused_loss(model, "nll")
    padded = model(**Collator(tok.pad_token_id)(examples))
    rows = pack_examples(examples, 1024)
    assert len(rows) < len(examples)
    batch = Collator(tok.pad_token_id)(rows)
    assert batch["position_ids"][0, 0] == 0 and (batch["position_ids"][0] == 0).sum() > 1
    packed = model(**batch)
    assert packed.num_tokens == padded.num_tokens
    torch.testing.assert_close(packed.loss, padded.loss, rtol=1e-4, atol=1e-4)
    # anchor: each example alone through the unpatched forward (no labels: plain logits) and
    # torch's own cross-entropy on the shifted labels
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            logits = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0, :-1]
            labels = torch.tensor(ex["labels"][1:])
            total += float(torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum"))
            count += int((labels != -100).sum())
    assert padded.num_tokens == count
    assert float(packed.loss) == pytest.approx(total, rel=1e-5)


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


def _train_cmd(tiny_model_dir, data, out, *extra):
    return [sys.executable, "-m", "deft.cli.main", "train", "--model", str(tiny_model_dir), "--data", str(data),
            "--output-dir", str(out), "--max-length", "256", "--lr", "1e-3", "--batch-size", "2",
            "--max-steps", "6", "--save-steps", "1", "--save-total-limit", "10", "--seed", "5", "--no-progress",
            "--objective", "cayley", *extra]


def test_resume_after_sigkill_continues_exactly(tiny_model_dir, figfont_records, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(tiny_model_dir, figfont_records, ref), check=True, env=env, capture_output=True)
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
    done = subprocess.run(_train_cmd(tiny_model_dir, figfont_records, out, "--resume"), env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stdout
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


@pytest.mark.slow
def test_two_processes_through_accelerate_match_one(tiny_model_dir, figfont_records, tmp_path):
    """Same global batch (2 processes x 2 vs 1 x 4): same per-step losses, gloo backend on CPU."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--model", str(tiny_model_dir), "--data", str(figfont_records), "--max-length", "256", "--lr", "1e-3",
              "--max-steps", "3", "--seed", "5", "--no-progress", "--objective", "deft"]
    one = tmp_path / "one"
    subprocess.run([sys.executable, "-m", "deft.cli.main", "train", *common, "--batch-size", "4",
                    "--output-dir", str(one)], check=True, env=env, capture_output=True)
    two = tmp_path / "two"
    launched = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "deft.cli.main", "train",
         *common, "--batch-size", "2", "--output-dir", str(two)], env=env, capture_output=True, text=True)
    assert launched.returncode == 0, launched.stderr[-3000:]
    a, b = metrics(one), metrics(two)
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-3)


@pytest.mark.parametrize("args,match", [
    (["--data", "/nonexistent.jsonl"], "no such file"),
    (["--objective", "bogus"], "unknown objective"),
    (["--objective", "kd"], "needs --teacher-model"),
    (["lr=abc"], "'lr' must be a number"),
    (["--truncation", "middle"], "'truncation' must be one of"),
    (["nonsense=1"], "unknown option 'nonsense'"),
])
def test_bad_input_gives_one_line_errors(tiny_model_dir, figfont_records, tmp_path, capsys, args, match):
    base = ["train", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--output-dir", str(tmp_path),
            "--no-progress", "--max-steps", "1"]
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err


def test_malformed_records_are_listed_with_file_and_line(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{not json\n{"prompt": "x"}\n')
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(bad), "--output-dir", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "2 invalid records" in err and "bad.jsonl:2" in err


def test_teacher_with_another_vocabulary_is_refused(tiny_model_dir, figfont_records, tmp_path, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path / "teacher"
    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(other)
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--output-dir",
                 str(tmp_path / "o"), "--objective", "kd", "--teacher-model", str(other), "--no-progress"]) == 2
    assert "vocabulary" in capsys.readouterr().err


def test_every_shipped_config_loads_and_starts_with_its_command():
    import yaml

    from deft.recipes.grid import validate_grid

    configs = sorted((ROOT / "examples").rglob("*.yaml"))
    kinds = {"train": 0, "grid": 0, "accelerate": 0, "paper": 0}
    for path in configs:
        first = path.read_text().splitlines()[0]
        if path.parent.name == "paper":  # loaded and planned by tests/test_recipes_paper.py
            assert first.startswith(f"# deft compare --protocol paper --config examples/paper/{path.name}")
            kinds["paper"] += 1
        elif first.startswith(f"# deft train --config examples/{path.name}"):
            load_config(str(path))
            kinds["train"] += 1
        elif first.startswith(f"# deft compare --grid examples/{path.name}"):
            validate_grid(yaml.safe_load(path.read_text()), str(path))
            kinds["grid"] += 1
        else:
            assert first.startswith("# accelerate launch --config_file examples/accelerate/" + path.name), path
            assert yaml.safe_load(path.read_text())["distributed_type"] in ("FSDP", "DEEPSPEED", "MULTI_GPU")
            kinds["accelerate"] += 1
    assert all(kinds.values()), kinds


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("objective: power:alpha=0.3\nlr: 1e-4\npacking: true\n")
    cfg = load_config(str(path), {"lr": "2e-5"})
    assert cfg.objective == "power:alpha=0.3" and cfg.lr == 2e-5 and cfg.packing is True
    path.write_text("lr: [1\n")
    with pytest.raises(ValueError, match="c.yaml:"):
        load_config(str(path))
    paper = load_config(None, {"model": "meta-llama/Llama-3.1-8B", "preset": "paper"})
    assert paper.lr == 2e-5
    assert load_config(None, {"model": "Qwen/Qwen2.5-Math-1.5B", "preset": "paper"}).lr == 5e-5
