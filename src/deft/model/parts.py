"""The parts of a Hugging Face causal LM the fused loss works with: the model under its wrappers,
its decoder and LM head, and a mixture-of-experts model's router loss."""

from __future__ import annotations

import sys

import torch

__all__ = ["unwrap", "full_shape", "lm_parts", "check_fusable", "decoder_output", "last_hidden", "router_aux_loss"]

# config attributes that change logits after the LM head: the fused loss cannot reproduce them
UNFUSABLE = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def unwrap(model):
    """The HF ``PreTrainedModel`` under PEFT / DDP wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "get_base_model") and callable(model.get_base_model):
            base = model.get_base_model()
            if base is model:
                return model
            model = base
        else:
            return model


def full_shape(param: torch.Tensor) -> torch.Size:
    """The whole shape of a parameter: ``ds_shape`` for one that DeepSpeed ZeRO-3 partitioned (it
    reads as an empty tensor outside its module's forward), else its shape."""
    return getattr(param, "ds_shape", None) or param.shape


def check_fusable(model) -> None:
    """Raise ``ValueError`` when the model post-processes logits in a way the fused loss cannot."""
    config = getattr(unwrap(model), "config", None)
    for key in UNFUSABLE:
        value = getattr(config, key, None)
        if value not in (None, 0, 1, 1.0, False):
            raise ValueError(f"the model's config sets {key}={value}: its logits are transformed after the LM head, "
                             "which the fused loss does not support; train it with fused=false")


def lm_parts(model):
    """``(decoder, lm_head)`` of an HF causal LM: the module producing final hidden states and the
    output projection (``nn.Linear`` with ``weight [V, H]`` and optional bias)."""
    base = unwrap(model)
    head = base.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise ValueError(f"{type(base).__name__} has no output embedding (LM head); it is not a causal LM")
    try:
        decoder = base.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        decoder = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    if decoder is None or decoder is base:
        raise ValueError(f"cannot find the decoder of {type(base).__name__}")
    return decoder, head


def decoder_output(model, input_ids, attention_mask, position_ids, **kwargs):
    """The decoder's output (final hidden states ``[B, T, H]``, router logits of MoE models)."""
    decoder, _ = lm_parts(model)
    return decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=False, **kwargs)


def last_hidden(out) -> torch.Tensor:
    """Final hidden states ``[B, T, H]`` of a decoder output."""
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def router_aux_loss(model, router_logits, attention_mask) -> tuple[float, torch.Tensor]:
    """``(coef, aux)``: the load-balancing loss of a mixture-of-experts model (Switch Transformer,
    Fedus et al. 2021, Eq. 4-6), computed by the model's own ``load_balancing_loss_func`` as its HF
    forward does (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, PhiMoE, GraniteMoE, JetMoE, ...)."""
    module = sys.modules.get(type(model).__module__)
    fn = getattr(module, "load_balancing_loss_func", None)
    coef = getattr(model, "router_aux_loss_coef", getattr(model.config, "router_aux_loss_coef", None))
    experts = getattr(model, "num_experts", None)
    top_k = getattr(model, "num_experts_per_tok", None)
    if fn is None or coef is None or experts is None or top_k is None or router_logits is None:
        raise ValueError(f"{type(model).__name__} asks for router logits (output_router_logits) but deft cannot "
                         "find its load-balancing loss; set config.output_router_logits=False or train with "
                         "fused=false")
    return float(coef), fn(router_logits, experts, top_k, attention_mask)
