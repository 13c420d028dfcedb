"""Tests of deft.model.head: the LM head's effective weight and bias, including a LoRA adapter on the
head itself."""

import pytest
import torch

from deft.model.fused_forward import patch_fused_loss

from patched_model_helpers import examples, mean_loss, stacked
from tiny_models import tiny_model


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
