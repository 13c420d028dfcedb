"""Tests of deft.train.trainer: ``DeftTrainer``: the HF ``Trainer`` with deft's loss normalisation,
statistics and safe checkpoints."""

import json

import pytest
import torch
from transformers import TrainerCallback

from deft.train import load_config, train
from deft.train.rundir import LOCK_NAME, read_metrics
from deft.train.trainer import NonFiniteError, warmup_steps

from train_step_helpers import sgd_config, tokenized_examples, write_records
from train_options_helpers import _quiet
from train_rundir_helpers import QUIET, cfg_for


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

    data = write_records(tmp_path / "d.jsonl", 2)
    cfg = load_config(None, {"model": str(tiny_model_dir), "data": str(data), "output_dir": str(tmp_path / "run"),
                             "max_steps": 1, "batch_size": 2, "progress": False, "adam_beta1": "0.8",
                             "adam_beta2": "0.95", "objective": "nll"})
    train(cfg, log=_quiet, callbacks=[Betas()])
    assert seen and all(b == (0.8, 0.95) for b in seen[0])


def test_micro_batch_mean_of_an_only_alias_divides_by_the_selected_tokens(tiny_model_dir, tmp_path):
    """SGD, lr 1, two micro-batches of one example: the step moves the weights by
    ``-grad(mean_mb(sum_{selected} -log p / |selected|))`` with selected = ``sg(p) >= tau``,
    computed here from the initial model's plain logits (no deft engine)."""
    from transformers import AutoModelForCausalLM

    data = write_records(tmp_path / "d.jsonl", 2)
    examples = tokenized_examples(tiny_model_dir, data)
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
    train(sgd_config(tiny_model_dir, data, out, objective=f"OnlyTopLogP-{tau}", batch_size=1, grad_accum=2,
                   loss_normalization="micro_batch"), log=_quiet)
    after = dict(AutoModelForCausalLM.from_pretrained(out / "final", dtype=torch.float32).named_parameters())
    scale = max(float(g.abs().max()) for g in grads.values())
    for name, g in grads.items():
        torch.testing.assert_close(before[name] - after[name].detach(), g, rtol=2e-4, atol=2e-5 * scale,
                                   msg=lambda m: f"{name}: {m}")
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["loss"] == pytest.approx(float(by_selected), rel=2e-5)


class _PoisonWeights(TrainerCallback):
    """Sets one weight to NaN at the start of optimizer step ``at + 1``."""

    def __init__(self, at):
        self.at = at

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.at:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("nan")


def test_a_non_finite_loss_mid_run_stops_with_no_final_model(tiny_model_dir, figfont_records, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as err:
        train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=6, save_steps=1, save_total_limit=10),
              callbacks=[_PoisonWeights(2)], **QUIET)
    message = str(err.value)
    assert "\n" not in message and message.startswith("step 3: loss is nan")
    assert str(out / "checkpoint-2") in message
    assert not (out / "final").exists() and not (out / "summary.json").exists()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(out / "checkpoint-2" / "model.safetensors").values())
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]  # the broken step is not logged
    assert not (out / LOCK_NAME).exists()


# -- warm-up ----------------------------------------------------------------------------------
def test_warmup_ratio_is_a_share_of_the_resolved_steps(tiny_model_dir, figfont_records, tmp_path):
    assert [warmup_steps(r, 10) for r in (0.0, 0.1, 0.25, 0.3)] == [0, 1, 3, 3]
    lrs = {}
    for ratio in (0.1, 0.2):
        out = tmp_path / f"w{ratio}"
        train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=10, lr=1e-3, lr_scheduler="constant_with_warmup",
                      warmup_ratio=ratio), **QUIET)
        lrs[ratio] = [r["lr"] for r in read_metrics(out / "metrics.jsonl")]
    # the rate each optimizer step used: 1 warm-up step (0), then the full rate; 2 steps: 0, 1/2, full
    assert lrs[0.1] == pytest.approx([0.0] + [1e-3] * 9)
    assert lrs[0.2] == pytest.approx([0.0, 5e-4] + [1e-3] * 8)
