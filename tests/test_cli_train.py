"""Tests of deft.cli.train: ``deft train``: fine-tune a causal LM with a token-level objective."""

import importlib.util

import pytest

from deft.cli.main import main
from deft.train import load_config

from train_options_helpers import _csv


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


def test_map_with_a_missing_column_is_a_one_line_error(tiny_model_dir, tmp_path, capsys):
    data = _csv(tmp_path / "qa.csv", [{"question": "q", "answer": "a"}])
    code = main(["train", "--model", str(tiny_model_dir), "--data", str(data),
                 "--map", "prompt=questoin,response=answer",
                 "--out", str(tmp_path / "run"), "--max-steps", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("deft train: error:") and "questoin" in line
    assert not (tmp_path / "run" / "final").exists()


def test_paper_template_family_from_model_name_key_or_error(tmp_path, capsys):
    def resolved(**kw):
        return load_config(None, kw).resolved_template()

    assert resolved(model="meta-llama/Llama-3.2-3B", protocol="paper") == "paper:llama"
    assert resolved(model="/ckpt/x", template="paper", model_key="deepseek-math-7b") == "paper:deepseek"
    assert resolved(model="/ckpt/x", template="paper-sft", model_key="llama-3.2-3b") == "paper-sft:llama"
    assert resolved(model="/ckpt/x", template="paper:llama") == "paper:llama"
    assert resolved(model="/ckpt/Qwen2.5-7B", template="plain", model_key="llama-3.1-8b") == "plain"
    with pytest.raises(ValueError, match=r"--model '/ckpt/x' names none; pass --model-key \(qwen-2.5-math-1.5b"):
        resolved(model="/ckpt/x", protocol="paper")
    with pytest.raises(ValueError, match=r"'model_key' must be one of the reference's model keys"):
        load_config(None, {"model": "/ckpt/x", "model_key": "gpt-2"})
    # the paper preset reads the model key too (Llama-3.1-8B: lr 2e-5)
    assert load_config(None, {"model": "/ckpt/x", "model_key": "llama-3.1-8b", "preset": "paper"}).lr == 2e-5
    # the command fails before touching the output folder or loading anything
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "q", "response": "a"}\n')
    out = tmp_path / "run"
    assert main(["train", "--model", str(tmp_path / "nowhere"), "--data", str(data), "--protocol", "paper",
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("deft train: error: --template paper:") and "--model-key" in err[-1]
    assert not out.exists()


def test_a_tracker_that_is_not_installed_is_refused_before_loading(tiny_model_dir, figfont_records, tmp_path, capsys):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    out = tmp_path / "run"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--out", str(out),
                 "--report-to", "wandb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'deft-sft[wandb]'" in err[0], err
    assert not out.exists()
