"""Patch a Hugging Face causal LM so that its training forward returns the fused loss.

The patched ``forward`` runs the model's own decoder (``model.get_decoder()``, the generic HF
interface shared by Llama, Qwen2, Mistral, Gemma, Phi, ...) to get the final hidden states
``[B, T, H]`` and hands them with the LM-head weight ``[V, H]`` (tied embeddings included) to
:func:`deft.fused_token_loss`; the ``[B, T, V]`` logits are never formed. Labels follow the HF
convention (aligned with ``input_ids``, ``-100`` = no loss) and are shifted inside: position
``t`` predicts ``labels[t + 1]``.

Because the call goes through ``model(...)``, wrappers such as DDP, FSDP, DeepSpeed and PEFT see a
normal forward. Calls without ``labels`` (generation, evaluation) use the original forward.

Reference / teacher distributions (``sft_kl``, ``asft``, ``kd``, ``kd_hybrid``, ``target_sft``)
come from a frozen model run on the same inputs: with a PEFT adapter the reference is the same
model with its adapter disabled, otherwise a separate frozen model.
"""

from __future__ import annotations

import contextlib
import sys
import types
from dataclasses import dataclass
from typing import Any, Optional

import torch
from transformers.utils import ModelOutput

from ..fused import fused_token_loss, token_loss
from ..objectives import Objective, parse_objective
from .head import check_head_supported, head_weight_and_bias

__all__ = ["FusedLossConfig", "FusedOutput", "patch_fused_loss", "unpatch_fused_loss", "lm_parts",
           "check_fusable", "is_patched"]

# config attributes that change logits after the LM head: the fused loss cannot reproduce them
_UNFUSABLE = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


@dataclass
class FusedLossConfig:
    """What the patched forward computes.

    ``reference``: a frozen causal LM whose distribution ``sft_kl``/``asft`` regularise toward, or
    ``"adapter"`` for the PEFT model itself with its adapter disabled. ``teacher``: a frozen causal
    LM with the same vocabulary (``kd``, ``kd_hybrid``, ``target_sft``). ``old_policy``: a frozen
    snapshot giving ``psft``'s old log-probabilities.
    """

    objective: Objective
    chunk_size: Optional[int] = None
    reference: Any = None
    teacher: Any = None
    old_policy: Any = None
    peft_owner: Any = None  # the PEFT wrapper whose adapter can be disabled
    fused: bool = True  # False: materialise the logits and use the plain token_loss (benchmarks, checks)
    reduction: str = "sum"  # loss of a call without num_items_in_batch: "sum" or "mean" over its loss tokens


@dataclass
class FusedOutput(ModelOutput):
    """Output of a patched training forward, indexable like HF's outputs (``outputs[0]``,
    ``outputs["loss"]`` and ``outputs.loss`` are the loss).

    ``loss``: the objective *summed* over this micro-batch's loss tokens (normalise it by the loss
    tokens of the whole optimizer step), or, when the caller passes ``num_items_in_batch`` (as
    ``transformers.Trainer`` does), that sum divided by it, which is HF's convention; with
    ``reduction="mean"`` at patch time a call without ``num_items_in_batch`` returns the mean.
    For mixture-of-experts models that return router logits, the router's load-balancing loss is
    included (see :func:`patch_fused_loss`) and also given alone as ``aux_loss``.
    Attributes that are not dict keys: ``num_tokens`` (loss tokens of this micro-batch) and
    ``stats`` (the per-token statistics of :func:`deft.fused_token_loss`).
    """

    loss: Optional[torch.Tensor] = None
    aux_loss: Optional[torch.Tensor] = None

    @classmethod
    def make(cls, loss, num_tokens: int, stats: dict, aux_loss=None) -> "FusedOutput":
        out = cls(loss=loss, aux_loss=aux_loss)
        # plain attributes, not dict items: HF's evaluation loop treats every item but the loss as logits
        object.__setattr__(out, "num_tokens", num_tokens)
        object.__setattr__(out, "stats", stats)
        return out

    def __getitem__(self, key):
        if key in ("num_tokens", "stats"):
            return getattr(self, key)
        return super().__getitem__(key)


def _unwrap(model):
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


def check_fusable(model) -> None:
    """Raise ``ValueError`` when the model post-processes logits in a way the fused loss cannot."""
    config = getattr(_unwrap(model), "config", None)
    for key in _UNFUSABLE:
        value = getattr(config, key, None)
        if value not in (None, 0, 1, 1.0, False):
            raise ValueError(f"the model's config sets {key}={value}: its logits are transformed after the LM head, "
                             "which the fused loss does not support; train it with fused=false")


def lm_parts(model):
    """``(decoder, lm_head)`` of an HF causal LM: the module producing final hidden states and the
    output projection (``nn.Linear`` with ``weight [V, H]`` and optional bias)."""
    base = _unwrap(model)
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


def _decoder_output(model, input_ids, attention_mask, position_ids, **kwargs):
    """The decoder's output (final hidden states ``[B, T, H]``, router logits of MoE models)."""
    decoder, _ = lm_parts(model)
    return decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=False, **kwargs)


def _last_hidden(out) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _frozen_hidden(model, adapter_disabled_of, input_ids, attention_mask, position_ids, kwargs):
    """Hidden states and LM-head weight of a frozen model, without gradients."""
    context = adapter_disabled_of.disable_adapter() if adapter_disabled_of is not None else contextlib.nullcontext()
    with torch.no_grad(), context:
        hidden = _last_hidden(_decoder_output(model, input_ids, attention_mask, position_ids, **kwargs))
        _, head = lm_parts(model)
        weight, _ = head_weight_and_bias(head, training=False)
        return hidden, weight.detach()


def _router_aux_loss(model, router_logits, attention_mask) -> tuple[float, torch.Tensor]:
    """``(coef, aux)``: the load-balancing loss of a mixture-of-experts model (Switch Transformer
    Eq. 4-6), computed by the model's own ``load_balancing_loss_func`` as its HF forward does."""
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


def _fused_forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None,
                   token_weights=None, **kwargs):
    cfg: FusedLossConfig = self._deft_config
    if labels is None:  # generation / plain inference
        return self._deft_original_forward(input_ids=input_ids, attention_mask=attention_mask,
                                           position_ids=position_ids, **kwargs)
    num_items = kwargs.pop("num_items_in_batch", None)
    return_dict = kwargs.pop("return_dict", None)
    router = kwargs.pop("output_router_logits", None)
    router = getattr(self.config, "output_router_logits", False) if router is None else router
    for key in ("output_attentions", "output_hidden_states", "use_cache", "logits_to_keep"):
        kwargs.pop(key, None)
    decoded = _decoder_output(self, input_ids, attention_mask, position_ids,
                              **(dict(kwargs, output_router_logits=True) if router else kwargs))
    hidden = _last_hidden(decoded)
    _, head = lm_parts(self)
    weight, bias = head_weight_and_bias(head, training=self.training)
    shift_labels = labels[:, 1:]
    extra = {}
    peft_owner = cfg.peft_owner
    if cfg.reference is not None:
        ref_model = peft_owner if cfg.reference == "adapter" else cfg.reference
        ref_h, ref_w = _frozen_hidden(ref_model, peft_owner if cfg.reference == "adapter" else None,
                                      input_ids, attention_mask, position_ids, kwargs)
        extra.update(ref_hidden=ref_h[:, :-1], ref_weight=ref_w)
    if cfg.teacher is not None:
        t_h, t_w = _frozen_hidden(cfg.teacher, None, input_ids, attention_mask, position_ids, kwargs)
        extra.update(teacher_hidden=t_h[:, :-1], teacher_weight=t_w)
    if cfg.old_policy is not None:
        o_h, o_w = _frozen_hidden(cfg.old_policy, None, input_ids, attention_mask, position_ids, kwargs)
        with torch.no_grad():
            nll = fused_token_loss(o_h[:, :-1], o_w, shift_labels, "nll", reduction="none",
                                   chunk_size=cfg.chunk_size)
        extra["old_logprobs"] = -nll
    weights = None if token_weights is None else token_weights[:, 1:]
    if not cfg.fused:
        loss, stats = _plain_loss(hidden[:, :-1], weight, bias, shift_labels, cfg.objective, weights, extra)
    else:
        loss, stats = fused_token_loss(
            hidden[:, :-1], weight, shift_labels, cfg.objective, bias=bias,
            reduction="sum", chunk_size=cfg.chunk_size, token_weights=weights, return_stats=True, **extra,
        )
    aux = None
    if router:
        coef, aux = _router_aux_loss(self, getattr(decoded, "router_logits", None), attention_mask)
        # weighted by this micro-batch's loss tokens: after the division by the step's loss tokens
        # one micro-batch gives HF's ``mean loss + coef * aux`` exactly, several their token-weighted mean
        loss = loss + coef * aux.to(loss.device, loss.dtype) * stats["num_tokens"]
    if num_items is not None:  # HF's convention: the sum over the step's loss tokens
        loss = loss / torch.clamp(torch.as_tensor(num_items, device=loss.device, dtype=loss.dtype), min=1)
    elif cfg.reduction == "mean":
        loss = loss / max(stats["num_tokens"], 1)
    out = FusedOutput.make(loss, stats["num_tokens"], stats, aux_loss=aux)
    return out.to_tuple() if return_dict is False else out


def _plain_loss(hidden, weight, bias, labels, objective, weights, extra):
    """The same loss and statistics from materialised logits (``fused=False``): the plain HF way."""
    logits = torch.nn.functional.linear(hidden, weight, bias)
    aux = {}
    if "ref_hidden" in extra:
        aux["ref_logits"] = extra["ref_hidden"] @ extra["ref_weight"].T
    if "teacher_hidden" in extra:
        aux["teacher_logits"] = extra["teacher_hidden"] @ extra["teacher_weight"].T
    if "old_logprobs" in extra:
        aux["old_logprobs"] = extra["old_logprobs"]
    return token_loss(logits, labels, objective, reduction="sum", token_weights=weights, return_stats=True, **aux)


def patch_fused_loss(model, objective="deft", *, chunk_size=None, reference=None, teacher=None,
                     old_policy=None, fused=True, reduction="sum"):
    """Patch ``model`` (an HF causal LM, possibly wrapped by PEFT) in place and return it.

    After patching, ``model(input_ids=..., attention_mask=..., labels=...)`` returns a
    :class:`FusedOutput` (indexable like HF outputs) whose ``loss`` is the objective summed over
    loss tokens (``reduction="sum"``, for trainers that divide by the step's loss tokens) or their
    mean (``reduction="mean"``, HF's per-call convention); a call that passes
    ``num_items_in_batch`` (``transformers.Trainer`` does) gets the sum divided by it, so the patched
    model trains correctly in a plain HF Trainer, gradient accumulation included.

    ``reference`` may be ``"adapter"`` (PEFT models: the adapter disabled) or a frozen model;
    ``teacher`` and ``old_policy`` are frozen models. Teacher and reference must share the
    vocabulary. ``fused=False`` computes the same output from materialised logits (for comparison).

    A LoRA adapter on the LM head (PEFT ``target_modules`` including ``lm_head``) joins the head
    weight (:mod:`deft.model.head`); one with dropout, a bias or a variant such as DoRA is refused.
    Mixture-of-experts models with ``config.output_router_logits`` keep their router
    load-balancing loss: ``coef * aux`` is added once per loss token of the micro-batch, so after
    the division by the step's loss tokens a single micro-batch gives HF's
    ``mean loss + router_aux_loss_coef * aux`` exactly (with accumulation, the token-weighted mean
    of the micro-batches' aux losses, where HF sums them).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    obj = parse_objective(objective)
    check_fusable(model)
    base = _unwrap(model)
    _, head = lm_parts(base)
    if fused:
        check_head_supported(head, training=True)
    if "ref" in obj.needs and reference is None:
        raise ValueError(f"objective '{obj.spec}' needs a reference model (with LoRA, reference='adapter')")
    if "teacher" in obj.needs and teacher is None:
        raise ValueError(f"objective '{obj.spec}' needs a teacher model")
    if "old_logprobs" in obj.needs and old_policy is None:
        raise ValueError(f"objective '{obj.spec}' needs an old-policy model")
    vocab = base.get_output_embeddings().weight.shape[0]
    for role, other in (("reference", reference), ("teacher", teacher)):
        if other is not None and other != "adapter":
            other_vocab = _unwrap(other).get_output_embeddings().weight.shape[0]
            if other_vocab != vocab:
                raise ValueError(f"the {role} model's vocabulary ({other_vocab}) differs from the model's ({vocab}); "
                                 "it must use the same tokenizer")
            for p in other.parameters():
                p.requires_grad_(False)
            other.eval()
    if reference == "adapter" and not hasattr(model, "disable_adapter"):
        raise ValueError("reference='adapter' needs a PEFT model (train with LoRA) or pass a frozen reference model")
    if not is_patched(base):
        base._deft_original_forward = base.forward
    # plain attributes (object.__setattr__): nn.Module would register modules as children
    object.__setattr__(base, "_deft_config", FusedLossConfig(
        obj, chunk_size=chunk_size, reference=reference, teacher=teacher, old_policy=old_policy,
        peft_owner=model if hasattr(model, "disable_adapter") else None, fused=fused, reduction=reduction))
    object.__setattr__(base, "forward", types.MethodType(_fused_forward, base))
    return model


def is_patched(model) -> bool:
    return hasattr(_unwrap(model), "_deft_original_forward")


def unpatch_fused_loss(model):
    """Restore the original forward."""
    base = _unwrap(model)
    if is_patched(base):
        base.forward = base._deft_original_forward
        for attr in ("_deft_original_forward", "_deft_config"):
            delattr(base, attr)
    return model
