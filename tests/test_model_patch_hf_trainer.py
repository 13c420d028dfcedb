"""A patched model inside the tools people already use: a plain ``transformers.Trainer``, a LoRA
adapter on the LM head, and a mixture-of-experts model's router loss."""

import pytest
import torch
from transformers import Trainer, TrainingArguments

import deft
from deft.model.fused_forward import FusedOutput, patch_fused_loss

from tiny_models import tiny_model


def examples(n=4, t=10, vocab=97, seed=0, prompt=(3, 5, 2, 6)):
    """``n`` examples of ``t`` tokens whose first ``prompt[i]`` tokens carry no loss, so the
    examples have different loss-token counts."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        ids = torch.randint(0, vocab, (t,), generator=g)
        labels = ids.clone()
        labels[: prompt[i % len(prompt)]] = -100
        rows.append({"input_ids": ids, "attention_mask": torch.ones(t, dtype=torch.long), "labels": labels})
    return rows


def stacked(rows):
    return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}


def mean_loss(model, batch, objective):
    """The objective's mean over every loss token of ``batch``, from the model's own logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return deft.token_loss(logits[:, :-1], batch["labels"][:, 1:], objective, reduction="mean")


def test_output_is_indexable_like_hf():
    model = patch_fused_loss(tiny_model(), "nll")
    batch = stacked(examples())
    out = model(**batch)
    assert isinstance(out, FusedOutput)
    assert out[0] is out.loss and out["loss"] is out.loss and out.to_tuple()[0] is out.loss
    assert out["num_tokens"] == out.num_tokens == int((batch["labels"][:, 1:] != -100).sum()) == 24
    assert list(out.keys()) == ["loss"]  # statistics are attributes, not items HF would take for logits
    with torch.no_grad():
        expected = mean_loss(model, batch, "nll") * out.num_tokens
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)  # the sum by default
    assert model(**batch, return_dict=False)[0].shape == ()
    halved = model(**batch, num_items_in_batch=torch.tensor(2 * out.num_tokens)).loss
    torch.testing.assert_close(halved, expected / (2 * out.num_tokens), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_plain_hf_trainer_trains_a_patched_model(tmp_path, accumulation):
    """Two optimizer steps in a plain ``transformers.Trainer``: each step's logged loss is the
    mean over all the step's 24 loss tokens (micro-batches of different token counts when
    accumulating), the parameters change and the loss decreases."""
    rows = examples()
    model = tiny_model()
    with torch.no_grad():
        first = mean_loss(model, stacked(rows), "deft").item()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    patch_fused_loss(model, "deft", reduction="mean")
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4 // accumulation,
        gradient_accumulation_steps=accumulation, max_steps=2, learning_rate=0.05, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows)
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert len(losses) == 2
    assert losses[0] == pytest.approx(first, rel=1e-4)
    assert losses[1] < losses[0]
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())
    with torch.no_grad():
        now = mean_loss(model, stacked(rows), "deft").item()
    # evaluation passes no num_items_in_batch: reduction="mean" gives the per-batch mean
    assert trainer.evaluate()["eval_loss"] == pytest.approx(now, rel=1e-4)


def head_lora(model, dropout=0.0):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "lm_head"],
                                            lora_dropout=dropout, init_lora_weights=False))


def test_lora_on_the_lm_head_joins_the_fused_weight():
    """The fused loss and its gradients for every LoRA matrix (the head's included) equal
    those of the model's own forward, whose head applies ``W0 + scale B A``."""
    batch = stacked(examples())
    model = head_lora(tiny_model(tie_word_embeddings=False))
    expected = mean_loss(model, batch, "deft") * 24
    expected.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert any("lm_head.lora_B" in n for n in grads)
    model.zero_grad()
    patch_fused_loss(model, "deft", chunk_size=7)
    out = model(**batch)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
    with model.disable_adapter():  # the base head again
        base = mean_loss(model, batch, "deft").item() * 24
        assert model(**batch).loss.item() == pytest.approx(base, rel=1e-5)
    assert abs(base - expected.item()) > 1e-3  # the adapter changes the loss: the test can tell


def test_lora_on_the_lm_head_with_dropout_is_refused():
    model = head_lora(tiny_model(tie_word_embeddings=False), dropout=0.1)
    with pytest.raises(ValueError, match="lm_head.*target_modules|lora_dropout"):
        patch_fused_loss(model, "deft")


def test_moe_router_loss_is_kept():
    """A tiny Mixtral with ``output_router_logits``: the patched mean equals HF's own loss
    ``mean CE + coef * aux``, ``aux_loss`` equals HF's, and the router gets HF's gradient."""
    batch = stacked(examples())
    model = tiny_model("mixtral", output_router_logits=True, router_aux_loss_coef=0.5)
    hf = model(**batch)
    assert hf.aux_loss is not None and hf.aux_loss.item() > 0
    hf.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    patch_fused_loss(model, "nll", reduction="mean")
    out = model(**batch)
    torch.testing.assert_close(out.aux_loss, hf.aux_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, hf.loss, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    routers = [n for n in grads if "gate" in n and "mlp" in n]
    assert routers
    for name in routers:
        torch.testing.assert_close(model.get_parameter(name).grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
    model.config.output_router_logits = False  # no router loss asked for: plain CE
    torch.testing.assert_close(model(**batch).loss, hf.loss - 0.5 * hf.aux_loss, rtol=1e-5, atol=1e-5)
