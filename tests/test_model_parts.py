"""Tests of deft.model.parts: the parts of a Hugging Face causal LM the fused loss works with: the
model under its wrappers, its decoder and LM head, and a mixture-of-experts model's router loss."""

import torch

from deft.model.fused_forward import patch_fused_loss

from patched_model_helpers import examples, stacked
from tiny_models import tiny_model


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
