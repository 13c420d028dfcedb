"""The patched HF forward returns the fused loss and the same gradients as the plain HF logits path."""

import pytest
import torch

import deft
from deft.model.fused_forward import is_patched, lm_parts, patch_fused_loss, unpatch_fused_loss

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
