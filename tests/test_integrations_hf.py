"""deft objectives in a plain ``transformers.Trainer``: ``compute_loss_func`` (logits from the
user's own model) and ``DeftTrainer`` with a patched model (fused), on tiny random models.

Losses are checked against ``deft.token_loss`` on the same rows, and the second step against a
hand-made SGD step."""

import copy

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from deft import token_loss
from deft.integrations.hf import compute_loss_func
from deft.model.fused_forward import patch_fused_loss
from deft.train.collate import PaddingCollator
from deft.train.trainer import DeftTrainer
from tiny_models import tiny_model

LR = 0.5


def rows():
    """4 rows of different lengths; the first 3 positions of each carry no loss."""
    g = torch.Generator().manual_seed(0)
    out = []
    for n in (9, 12, 7, 15):
        ids = torch.randint(3, 97, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:]})
    return out


def args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, logging_steps=1,
                optim="sgd", learning_rate=LR, lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0,
                report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, remove_unused_columns=False,
                seed=0)
    base.update(kw)
    return TrainingArguments(**base)


def expected_losses(objective="deft"):
    """Step 1 and step 2 losses by hand: token_loss on the padded batch (mean over loss tokens),
    one SGD step of its gradient, token_loss again."""
    model = tiny_model()
    batch = PaddingCollator(0)(rows())
    losses = []
    for _ in range(2):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = token_loss(logits[:, :-1], batch["labels"][:, 1:], objective, reduction="mean")
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad
        losses.append(float(loss.detach()))
    return losses


def train_losses(trainer):
    trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_compute_loss_func_trains_two_steps(tmp_path):
    trainer = Trainer(model=tiny_model(), args=args(tmp_path), train_dataset=Dataset.from_list(rows()),
                      data_collator=PaddingCollator(0), compute_loss_func=compute_loss_func("deft"))
    got = train_losses(trainer)
    want = expected_losses("deft")
    assert got == pytest.approx(want, rel=1e-5)
    assert want[1] < want[0]  # it trains
    nll = expected_losses("nll")
    assert got[0] != pytest.approx(nll[0], rel=1e-4)  # and it is not the model's own NLL


def test_cayley_floor_trains_through_compute_loss_func(tmp_path):
    """Its only need is an engine statistic (the batch mean of p), which the logits give."""
    trainer = Trainer(model=tiny_model(), args=args(tmp_path), train_dataset=Dataset.from_list(rows()),
                      data_collator=PaddingCollator(0), compute_loss_func=compute_loss_func("cayley_floor"))
    assert train_losses(trainer) == pytest.approx(expected_losses("cayley_floor"), rel=1e-5)


def test_compute_loss_func_normalises_over_the_accumulated_step(tmp_path):
    """bs 2 x 2 accumulation == bs 4: the divisor is the step's loss tokens (rows of 6-12 loss
    tokens, so a per-micro-batch mean would differ)."""
    params = []
    for bs, ga in ((4, 1), (2, 2)):
        trainer = Trainer(model=tiny_model(), args=args(tmp_path, per_device_train_batch_size=bs,
                                                        gradient_accumulation_steps=ga, max_steps=1),
                          train_dataset=Dataset.from_list(rows()), data_collator=PaddingCollator(0),
                          compute_loss_func=compute_loss_func("cayley"))
        trainer.train()
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    torch.testing.assert_close(params[1], params[0], rtol=1e-4, atol=1e-6)


def test_compute_loss_func_empty_batch_and_refusals():
    fn = compute_loss_func("deft")
    logits = torch.randn(2, 5, 11, requires_grad=True)
    loss = fn({"logits": logits}, torch.full((2, 5), -100), num_items_in_batch=None)
    loss.backward()
    assert float(loss) == 0.0 and torch.count_nonzero(logits.grad) == 0
    with pytest.raises(ValueError, match="needs teacher.*DeftTrainer"):
        compute_loss_func("kd")
    with pytest.raises(ValueError, match="unknown objective"):
        compute_loss_func("deftt")


def test_deft_trainer_with_a_patched_model_is_the_fused_drop_in(tmp_path):
    """The documented fused route: the same two losses as the hand-made steps, LM head never run."""
    model = patch_fused_loss(tiny_model(), "deft")
    calls = []
    model.get_output_embeddings().register_forward_hook(lambda *a: calls.append(1))
    trainer = DeftTrainer(model=model, args=args(tmp_path), train_dataset=Dataset.from_list(rows()),
                          data_collator=PaddingCollator(0), progress=False)
    assert train_losses(trainer) == pytest.approx(expected_losses("deft"), rel=1e-5)
    assert calls == []
    # without labels the patched model runs its original forward: generation is unchanged
    out = copy.deepcopy(trainer.model).generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_plain_trainer_with_a_patched_model(tmp_path):
    """transformers.Trainer passes num_items_in_batch to the patched forward: the same two losses."""
    model = patch_fused_loss(tiny_model(), "deft")
    trainer = Trainer(model=model, args=args(tmp_path), train_dataset=Dataset.from_list(rows()),
                      data_collator=PaddingCollator(0))
    assert train_losses(trainer) == pytest.approx(expected_losses("deft"), rel=1e-5)
