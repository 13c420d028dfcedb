"""One optimizer step of ``deft train`` checked against an independent computation.

With SGD, learning rate 1, a constant schedule, no weight decay and no clipping, one step moves
every parameter by exactly ``-grad`` of the objective the trainer claims to minimise. That
gradient is computed here without any trainer code: the initial model's plain forward gives the
logits of each example on its own (no padding, no packing, no fused engine), ``deft.token_loss``
(``reduction='sum'``) gives each example's summed loss, and the normalisation is written out by
hand:

* ``tokens``: ``sum_i L_i / sum_i n_i`` over every example of the step (all micro-batches and
  processes);
* ``micro_batch``: the mean over micro-batches of ``sum_{i in mb} L_i / sum_{i in mb} n_i``
  (the reference implementation's scheme; with one example per micro-batch the grouping does
  not matter).

The step uses every example of the data file exactly once (examples = batch size x accumulation x
processes), so the data order does not change the expected value. The logged ``loss``,
``grad_norm`` and token statistics of step 1 are checked against the same computation. The same
checks with 2 processes (each loss normalisation, every engine) are in ``test_train_sharding.py``.
"""

import json
from pathlib import Path

import pytest
import torch

from deft.train import train
from train_step_helpers import (check_step, independent_step, sgd_config, tokenized_examples,
                                write_records)


@pytest.mark.parametrize("objective,batch_size,grad_accum", [
    ("nll", 4, 1), ("deft", 4, 1), ("nll", 2, 2), ("deft", 1, 4),
])
def test_one_sgd_step_moves_every_parameter_by_minus_the_gradient(tiny_model_dir, tmp_path, objective, batch_size,
                                                                   grad_accum):
    """Tokens normalisation: one and several micro-batches (of unequal token counts)."""
    data = write_records(tmp_path / "data.jsonl", batch_size * grad_accum)
    examples = tokenized_examples(tiny_model_dir, data)
    assert len({sum(label != -100 for label in ex["labels"]) for ex in examples}) == len(examples)  # unequal counts
    before, grads, logged = independent_step(tiny_model_dir, examples, objective)
    out = tmp_path / "run"
    train(sgd_config(tiny_model_dir, data, out, objective=objective, batch_size=batch_size, grad_accum=grad_accum),
          log=lambda *_: None)
    check_step(out, before, grads, logged)


def test_one_sgd_step_with_micro_batch_normalisation_is_the_mean_of_means(tiny_model_dir, tmp_path):
    """Two micro-batches of different token counts: the update is ``-grad((L_a/n_a + L_b/n_b) / 2)``,
    which differs from the tokens-normalised one."""
    data = write_records(tmp_path / "data.jsonl", 2)
    examples = tokenized_examples(tiny_model_dir, data)
    before, grads, logged = independent_step(tiny_model_dir, examples, "deft", normalization="micro_batch")
    _, token_grads, _ = independent_step(tiny_model_dir, examples, "deft", normalization="tokens")
    name = next(iter(grads))
    assert not torch.allclose(grads[name], token_grads[name], rtol=1e-2)  # the two schemes differ here
    out = tmp_path / "run"
    train(sgd_config(tiny_model_dir, data, out, objective="deft", batch_size=1, grad_accum=2,
                   loss_normalization="micro_batch"), log=lambda *_: None)
    check_step(out, before, grads, logged)


def test_a_resumed_sgd_step_is_minus_the_gradient_at_the_checkpoint(tiny_model_dir, tmp_path):
    """Resume anchored to an independent computation (the resume tests compare a resumed run with
    an uninterrupted one): a 2-step run checkpointed at step 1 is cut back to that checkpoint, as
    after a crash, its weights are perturbed (so a run that restarted from scratch, or resumed from
    anything but the checkpoint, would fail), and it is resumed; step 2 must move every parameter
    of the checkpoint's weights by ``-grad`` of the objective at those weights. Every step uses the
    same 4 examples (batch 4 of a 4-example file), so the data order cannot change the expected value."""
    import shutil

    from transformers import AutoModelForCausalLM

    data = write_records(tmp_path / "data.jsonl", 4)
    examples = tokenized_examples(tiny_model_dir, data)
    out = tmp_path / "run"
    train(sgd_config(tiny_model_dir, data, out, objective="deft", batch_size=4, max_steps=2, save_steps=1),
          log=lambda *_: None)
    checkpoint = out / "checkpoint-1"
    for name in ("final", "checkpoint-2", "summary.json"):  # as if killed just after checkpoint 1
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.05)
    model.save_pretrained(checkpoint)
    before, grads, _ = independent_step(checkpoint, examples, "deft")
    train(sgd_config(tiny_model_dir, data, out, objective="deft", batch_size=4, max_steps=2, save_steps=1, resume=True),
          log=lambda *_: None)
    after = _final_params(out)
    scale = max(float(g.abs().max()) for g in grads.values())
    for name, g in grads.items():
        torch.testing.assert_close(before[name] - after[name].detach(), g, rtol=2e-4, atol=2e-5 * scale,
                                   msg=lambda m: f"{name}: {m}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # step 1 logged once, by the first run


def _final_params(out: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return dict(AutoModelForCausalLM.from_pretrained(out / "final", dtype=torch.float32).named_parameters())


@pytest.mark.parametrize("factor", [1 / 1.01, 2.0])
def test_a_trainer_whose_loss_is_off_by_a_constant_factor_fails_the_absolute_check(tiny_model_dir, tmp_path,
                                                                                  monkeypatch, factor):
    """The two breakages that the run-vs-run tests missed (the normalised loss divided by 1.01x the
    step's loss tokens, or multiplied by 2) move the SGD step by that factor, which ``check_step``
    must notice; the unbroken trainer passes the same check in the tests above."""
    from deft.train.trainer import DeftTrainer

    original = DeftTrainer.compute_loss

    def scaled_compute_loss(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        return (out[0] * factor, out[1]) if isinstance(out, tuple) else out * factor

    monkeypatch.setattr(DeftTrainer, "compute_loss", scaled_compute_loss)
    data = write_records(tmp_path / "data.jsonl", 2)
    examples = tokenized_examples(tiny_model_dir, data)
    before, grads, logged = independent_step(tiny_model_dir, examples, "nll")
    out = tmp_path / "run"
    train(sgd_config(tiny_model_dir, data, out, objective="nll", batch_size=1, grad_accum=2), log=lambda *_: None)
    with pytest.raises(AssertionError, match="are not close"):  # the parameters moved by factor x grad
        check_step(out, before, grads, logged)
