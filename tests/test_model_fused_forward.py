"""The patched HF forward returns the fused loss and the same gradients as the plain HF logits path."""

import pytest
import torch
from transformers import Trainer, TrainingArguments

import deft
from deft.model.fused_forward import FusedOutput, is_patched, lm_parts, patch_fused_loss, unpatch_fused_loss

from patched_model_helpers import examples, mean_loss, stacked
from tiny_models import tiny_model


def batch(vocab=97, b=3, t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 9:] = 0  # right padding
    labels = ids.clone()
    labels[:, :4] = -100  # prompt
    labels[mask == 0] = -100
    return ids, mask, labels


def plain_loss(model, ids, mask, labels, objective, **kw):
    logits = model(input_ids=ids, attention_mask=mask).logits
    return deft.token_loss(logits[:, :-1], labels[:, 1:], objective, reduction="sum", **kw)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "gemma"])
@pytest.mark.parametrize("tied", [True, False])
def test_patched_forward_equals_plain_logits_path(arch, tied):
    ids, mask, labels = batch()
    model = tiny_model(arch, tie_word_embeddings=tied)
    ref = plain_loss(model, ids, mask, labels, "deft")
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    patch_fused_loss(model, "deft", chunk_size=7)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.num_tokens == int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(out.loss, ref, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert "p" in out.stats and "focus" in out.stats


def test_generation_path_is_untouched_and_unpatch_restores():
    ids, mask, _ = batch()
    model = tiny_model()
    before = model(input_ids=ids, attention_mask=mask).logits
    patch_fused_loss(model, "nll")
    assert is_patched(model)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before)
    unpatch_fused_loss(model)
    assert not is_patched(model)


def test_lora_with_adapter_disabled_reference():
    from peft import LoraConfig, get_peft_model

    ids, mask, labels = batch()
    base = tiny_model()
    frozen = tiny_model()  # same seed: the base weights, as a separate reference model
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    ref_logits = frozen(input_ids=ids, attention_mask=mask).logits.detach()
    expected = plain_loss(model, ids, mask, labels, "sft_kl:lam=0.5", ref_logits=ref_logits[:, :-1])
    patch_fused_loss(model, "sft_kl:lam=0.5", reference="adapter")
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)


def test_teacher_and_old_policy():
    ids, mask, labels = batch()
    model, teacher = tiny_model(seed=0), tiny_model(seed=1)
    t_logits = teacher(input_ids=ids, attention_mask=mask).logits.detach()
    expected = plain_loss(model, ids, mask, labels, "kd_hybrid", teacher_logits=t_logits[:, :-1])
    keys, n_params = set(model.state_dict()), len(list(model.parameters()))
    patch_fused_loss(model, "kd_hybrid", teacher=teacher)
    # the teacher is not registered as a submodule: checkpoints and optimizers see the model alone
    assert set(model.state_dict()) == keys and len(list(model.parameters())) == n_params
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).loss, expected,
                               rtol=1e-5, atol=1e-5)
    old = tiny_model(seed=2)
    old_lp = torch.log_softmax(old(input_ids=ids, attention_mask=mask).logits.detach()[:, :-1], -1)
    old_lp = old_lp.gather(-1, labels[:, 1:].clamp_min(0)[..., None])[..., 0]
    unpatch_fused_loss(model)
    expected = plain_loss(model, ids, mask, labels, "psft", old_logprobs=old_lp)
    patch_fused_loss(model, "psft", old_policy=old)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).loss, expected,
                               rtol=1e-5, atol=1e-5)


def test_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="teacher"):
        patch_fused_loss(model, "kd")
    with pytest.raises(ValueError, match="vocabulary"):
        patch_fused_loss(model, "kd", teacher=tiny_model(vocab_size=98))
    with pytest.raises(ValueError, match="PEFT"):
        patch_fused_loss(model, "sft_kl", reference="adapter")
    soft = tiny_model("gemma")
    soft.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="softcapping"):
        patch_fused_loss(soft, "nll")
    decoder, head = lm_parts(model)
    assert head.weight.shape == (97, 32)


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


def test_statistics_survive_an_output_rebuilt_from_its_items():
    """FSDP2's and accelerate's mixed-precision casts rebuild a model output from its dict items
    (``tree_map`` / ``recursively_apply``), which drops the plain ``num_tokens`` and ``stats``
    attributes; ``fused_extras`` then reads those of the model's last call."""
    from torch.utils._pytree import tree_map

    from deft.model.fused_forward import fused_extras

    model = patch_fused_loss(tiny_model("llama"), "deft")
    ids = torch.randint(0, 97, (2, 6))
    out = model(input_ids=ids, labels=ids)
    rebuilt = tree_map(lambda t: t.float() if isinstance(t, torch.Tensor) else t, out)
    assert not hasattr(rebuilt, "stats")
    num_tokens, stats = fused_extras(model, rebuilt)
    assert num_tokens == out.num_tokens == 10 and stats is out.stats
    assert fused_extras(model, out) == (out.num_tokens, out.stats)
    with pytest.raises(ValueError, match="patch_fused_loss"):
        fused_extras(tiny_model("llama"), rebuilt)
