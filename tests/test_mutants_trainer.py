"""The trainer's loss step (``DeftTrainer.compute_loss``) where the absolute tests don't reach.

Each test here was written for a mutant of ``make mutate`` (group ``trainer_loss``, see
docs/testing.md); expected values come from an independent computation or a physical bound.
"""

import json
import time

import pytest
import torch

from deft.train import train
from train_step_helpers import sgd_config, write_records


def test_step_throughput_is_measured_from_the_first_micro_batch(tiny_model_dir, tmp_path):
    # tokens_per_s = input tokens / seconds since the step's first forward: at least the tokens over
    # the whole train() call's wall time, and at most what a forward + backward in 0.1 ms would give
    data = write_records(tmp_path / "data.jsonl", 2)
    start = time.perf_counter()
    train(sgd_config(tiny_model_dir, data, tmp_path / "run", batch_size=1, grad_accum=2), log=lambda *_: None)
    wall = time.perf_counter() - start
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["input_tokens"] / wall <= row["tokens_per_s"] <= row["input_tokens"] / 1e-4


# -- direct calls of compute_loss -----------------------------------------------------------------
# A tiny patched model and hand-made rows; the expected values come from the model's plain logits
# (the generation path, untouched by the patch) and ``deft.token_loss`` (reduction "sum").

_ROWS = [[5, 17, 23, 9, 41, 2, 60, 33], [7, 7, 80, 12, 3, 54, 19, 26]]
_LABELS = [[-100, -100, -100, 9, 41, 2, 60, 33], [-100, -100, -100, -100, -100, 54, 19, -100]]  # 5 + 2 tokens


def _trainer(tmp_path, normalization, grad_accum=1):
    from transformers import TrainingArguments

    from deft.model.fused_forward import patch_fused_loss
    from deft.train.trainer import DeftTrainer
    from tiny_models import tiny_model

    model = patch_fused_loss(tiny_model(seed=1), "nll")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], disable_tqdm=True,
                             gradient_accumulation_steps=grad_accum)
    return DeftTrainer(model=model, args=args, loss_normalization=normalization, progress=False), model


def _batch(labels=_LABELS):
    ids = torch.tensor(_ROWS)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(labels)}


def _summed_nll(model, batch):
    """``(sum of -log p over the loss tokens, their number)`` from the plain logits."""
    from deft import token_loss

    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss, stats = token_loss(logits[:, :-1], batch["labels"][:, 1:], "nll", reduction="sum", return_stats=True)
    return float(loss), int(stats["num_tokens"])


def test_compute_loss_without_the_step_token_count_is_the_micro_batch_mean(tmp_path):
    """``tokens`` normalisation called without ``num_items_in_batch`` (transformers 4.x evaluates
    that way; the argument is optional): the micro-batch's own mean ``sum L / n``."""
    trainer, model = _trainer(tmp_path, "tokens")
    model.eval()
    batch = _batch()
    total, n = _summed_nll(model, batch)
    assert n == 7 and total > n  # -log p of a random 97-way model is about log 97 > 1 per token
    loss = trainer.compute_loss(model, batch)
    assert float(loss.detach()) == pytest.approx(total / n, rel=1e-5)


def test_compute_loss_of_a_step_without_loss_tokens_is_zero(tmp_path):
    """A step whose every label is ignored (``num_items_in_batch`` = 0) adds nothing: loss 0, not
    0/0."""
    trainer, model = _trainer(tmp_path, "tokens")
    model.train()
    loss = trainer.compute_loss(model, _batch([[-100] * 8] * 2), num_items_in_batch=torch.tensor(0))
    assert float(loss.detach()) == 0.0


_ONE_TOKEN = [[-100] * 8, [-100] * 6 + [19, -100]]


@pytest.mark.parametrize("normalization", ["tokens", "micro_batch"])
def test_compute_loss_of_a_single_loss_token_divides_by_one(tmp_path, normalization):
    """One loss token in the step (``num_items_in_batch`` = 1) and in the micro-batch: the loss is that
    token's -log p, divided by 1 (the guards against a zero count must not raise the count)."""
    trainer, model = _trainer(tmp_path, normalization)
    model.train()
    batch = _batch(_ONE_TOKEN)
    total, n = _summed_nll(model, batch)
    assert n == 1
    loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(1))
    assert float(loss.detach()) == pytest.approx(total, rel=1e-5)


def test_micro_batch_mean_of_a_micro_batch_without_loss_tokens_is_zero(tmp_path):
    """``micro_batch``: a micro-batch with no loss (or selected) token adds 0, not 0/0."""
    trainer, model = _trainer(tmp_path, "micro_batch", grad_accum=2)
    model.train()
    loss = trainer.compute_loss(model, _batch([[-100] * 8] * 2), num_items_in_batch=torch.tensor(0))
    assert float(loss.detach()) == 0.0


def test_micro_batch_evaluation_loss_is_the_batch_mean(tmp_path):
    """``micro_batch`` in evaluation: the batch's mean ``sum L / n``, not divided by the
    accumulation steps (or anything else)."""
    trainer, model = _trainer(tmp_path, "micro_batch", grad_accum=2)
    model.eval()
    batch = _batch()
    total, n = _summed_nll(model, batch)
    loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(n))
    assert float(loss.detach()) == pytest.approx(total / n, rel=1e-5)


def test_micro_batch_mean_of_a_shorter_last_step_divides_by_its_own_micro_batches(tmp_path):
    """The epoch's last optimizer step can hold fewer micro-batches than ``grad_accum`` (HF sets
    ``current_gradient_accumulation_steps`` to their number): each is divided by that number, so
    the step's loss is still the mean of its micro-batches' means."""
    trainer, model = _trainer(tmp_path, "micro_batch", grad_accum=2)
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # a last step of one micro-batch
    batch = _batch()
    total, n = _summed_nll(model, batch)
    loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(n))
    assert float(loss.detach()) == pytest.approx(total / n, rel=1e-5)
    trainer.current_gradient_accumulation_steps = 2  # a full step: half of the mean
    loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(n))
    assert float(loss.detach()) == pytest.approx(total / n / 2, rel=1e-5)
