"""``deft train`` options that connect the trainer to the data layer, the needs registry and the
reference's protocol: ``--map``, the paper template with ``--model-key``, AdamW betas, and the
micro-batch normalisation of the reference's ``Only*`` objectives (absolute SGD step)."""

import csv
import json

import pytest
import torch

from deft.cli.main import main
from deft.train import load_config, train
from test_train_absolute import _examples, _records, _sgd_cfg


def _quiet(*_):
    pass


# ------------------------------------------------------------------ --map KEY=COLUMN

def _csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_map_renames_csv_columns_for_training_and_eval(tiny_model_dir, tiny_tokenizer, tmp_path):
    from deft.train.run import build_examples

    rows = [{"question": "What is 2+2?", "answer": "four"}, {"question": "Capital of France?", "answer": "Paris"}]
    data = _csv(tmp_path / "qa.csv", rows)
    cfg = load_config(None, {"model": str(tiny_model_dir), "map": "prompt=question,response=answer",
                             "template": "plain", "max_length": 64})
    examples = list(build_examples(cfg, tiny_tokenizer, str(data), log=_quiet))
    # the response tokens are the answer column's text + EOS, the prompt is the question column's
    for ex, row in zip(examples, rows):
        target = [t for t, l in zip(ex["input_ids"], ex["labels"]) if l != -100]
        assert target == tiny_tokenizer(row["answer"], add_special_tokens=False)["input_ids"] + \
            [tiny_tokenizer.eos_token_id]
        prompt = tiny_tokenizer.decode([t for t, l in zip(ex["input_ids"], ex["labels"]) if l == -100])
        assert row["question"] in prompt and row["answer"] not in prompt
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny_model_dir), "--data", str(data), "--eval-data", str(data),
                 "--map", "prompt=question,response=answer", "--out", str(out), "--max-steps", "1",
                 "--batch-size", "2", "--no-progress", "--template", "plain", "--objective", "nll"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["eval_loss"] > 0


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


# ------------------------------------------------------------------ template: paper

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


# ------------------------------------------------------------------ AdamW betas

def test_adam_betas_resolved_and_given_to_the_optimizer(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    assert (load_config(None, {}).adam_beta1, load_config(None, {}).adam_beta2) == (0.9, 0.999)
    paper = load_config(None, {"protocol": "paper", "model_key": "qwen-2.5-7b"})
    assert (paper.adam_beta1, paper.adam_beta2) == (0.9, 0.95)
    assert load_config(None, {"protocol": "paper", "model_key": "qwen-2.5-7b", "adam_beta2": "0.98"}).adam_beta2 == 0.98
    with pytest.raises(ValueError, match=r"'adam_beta2' must be a ratio in \[0, 1\)"):
        load_config(None, {"adam_beta2": "1"})

    seen = []

    class Betas(TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            seen.append([tuple(g["betas"]) for g in optimizer.param_groups])

    data = _records(tmp_path / "d.jsonl", 2)
    cfg = load_config(None, {"model": str(tiny_model_dir), "data": str(data), "output_dir": str(tmp_path / "run"),
                             "max_steps": 1, "batch_size": 2, "progress": False, "adam_beta1": "0.8",
                             "adam_beta2": "0.95", "objective": "nll"})
    train(cfg, log=_quiet, callbacks=[Betas()])
    assert seen and all(b == (0.8, 0.95) for b in seen[0])


# ------------------------------------------------------------------ micro_batch with Only* aliases

def test_micro_batch_mean_of_an_only_alias_divides_by_the_selected_tokens(tiny_model_dir, tmp_path):
    """SGD, lr 1, two micro-batches of one example: the step moves the weights by
    ``-grad(mean_mb(sum_{selected} -log p / |selected|))`` with selected = ``sg(p) >= tau``,
    computed here from the initial model's plain logits (no deft engine)."""
    from transformers import AutoModelForCausalLM

    data = _records(tmp_path / "d.jsonl", 2)
    examples = _examples(tiny_model_dir, data)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="eager")
    model.train()
    names, params = zip(*model.named_parameters())
    logps = []
    for ex in examples:
        ids, labels = torch.tensor([ex["input_ids"]]), torch.tensor(ex["labels"][1:])
        logits = model(input_ids=ids).logits[0, :-1]
        keep = labels != -100
        logps.append(torch.log_softmax(logits[keep], -1).gather(-1, labels[keep, None])[:, 0])
    p_all = torch.cat([lp.detach().exp() for lp in logps])
    ps = p_all.sort().values
    mid = len(ps) // 2  # halfway between two neighbouring probabilities: no token sits near the threshold
    tau = float(f"{float(ps[mid - 1] + ps[mid]) / 2:.6g}")
    selected = [lp.detach().exp() >= tau for lp in logps]
    assert all(0 < int(s.sum()) < len(s) for s in selected)  # some, not all tokens, in each micro-batch
    by_selected = sum(-(lp * s).sum() / s.sum() for lp, s in zip(logps, selected)) / 2
    by_labels = sum(-(lp * s).sum() / len(s) for lp, s in zip(logps, selected)) / 2
    grads = dict(zip(names, torch.autograd.grad(by_selected, params, retain_graph=True)))
    wrong = torch.autograd.grad(by_labels, params[-1])[0]
    assert not torch.allclose(grads[names[-1]], wrong, rtol=1e-2)  # the two denominators differ here
    before = {n: p.detach().clone() for n, p in zip(names, params)}

    out = tmp_path / "run"
    train(_sgd_cfg(tiny_model_dir, data, out, objective=f"OnlyTopLogP-{tau}", batch_size=1, grad_accum=2,
                   loss_normalization="micro_batch"), log=_quiet)
    after = dict(AutoModelForCausalLM.from_pretrained(out / "final", dtype=torch.float32).named_parameters())
    scale = max(float(g.abs().max()) for g in grads.values())
    for name, g in grads.items():
        torch.testing.assert_close(before[name] - after[name].detach(), g, rtol=2e-4, atol=2e-5 * scale,
                                   msg=lambda m: f"{name}: {m}")
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["loss"] == pytest.approx(float(by_selected), rel=2e-5)
