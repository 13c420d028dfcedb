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
import types
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..fused import fused_token_loss, token_loss
from ..objectives import Objective, parse_objective

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
    fused: bool = True  # False: materialise the logits and use the plain token_loss


@dataclass
class FusedOutput:
    """Output of a patched training forward: ``loss`` is the *sum* over loss tokens (normalise it
    by the loss tokens of the whole optimizer step), ``num_tokens`` their count in this
    micro-batch and ``stats`` the per-token statistics of :func:`deft.fused_token_loss`."""

    loss: torch.Tensor
    num_tokens: int
    stats: dict

    def __getitem__(self, key):  # HF Trainer reads outputs["loss"]
        return getattr(self, key)


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


def _hidden(model, input_ids, attention_mask, position_ids, **kwargs) -> torch.Tensor:
    decoder, _ = lm_parts(model)
    out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                  use_cache=False, **kwargs)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _frozen_hidden(model, adapter_disabled_of, input_ids, attention_mask, position_ids, kwargs):
    """Hidden states and LM-head weight of a frozen model, without gradients."""
    context = adapter_disabled_of.disable_adapter() if adapter_disabled_of is not None else contextlib.nullcontext()
    with torch.no_grad(), context:
        hidden = _hidden(model, input_ids, attention_mask, position_ids, **kwargs)
        _, head = lm_parts(model)
        return hidden, head.weight.detach()


def _fused_forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None,
                   token_weights=None, **kwargs):
    cfg: FusedLossConfig = self._deft_config
    if labels is None:  # generation / plain inference
        return self._deft_original_forward(input_ids=input_ids, attention_mask=attention_mask,
                                           position_ids=position_ids, **kwargs)
    for key in ("num_items_in_batch", "return_dict", "output_attentions", "output_hidden_states", "use_cache",
                "logits_to_keep"):
        kwargs.pop(key, None)
    hidden = _hidden(self, input_ids, attention_mask, position_ids, **kwargs)
    _, head = lm_parts(self)
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
        return _plain_output(hidden[:, :-1], head, shift_labels, cfg.objective, weights, extra)
    loss, stats = fused_token_loss(
        hidden[:, :-1], head.weight, shift_labels, cfg.objective, bias=getattr(head, "bias", None),
        reduction="sum", chunk_size=cfg.chunk_size, token_weights=weights, return_stats=True, **extra,
    )
    return FusedOutput(loss=loss, num_tokens=stats["num_tokens"], stats=stats)


def _plain_output(hidden, head, labels, objective, weights, extra) -> FusedOutput:
    """The same output from materialised logits (``fused=False``): the plain HF way."""
    logits = head(hidden)
    aux = {}
    if "ref_hidden" in extra:
        aux["ref_logits"] = extra["ref_hidden"] @ extra["ref_weight"].T
    if "teacher_hidden" in extra:
        aux["teacher_logits"] = extra["teacher_hidden"] @ extra["teacher_weight"].T
    if "old_logprobs" in extra:
        aux["old_logprobs"] = extra["old_logprobs"]
    loss, stats = token_loss(logits, labels, objective, reduction="sum", token_weights=weights,
                             return_stats=True, **aux)
    return FusedOutput(loss=loss, num_tokens=stats["num_tokens"], stats=stats)


def patch_fused_loss(model, objective="deft", *, chunk_size=None, reference=None, teacher=None,
                     old_policy=None, fused=True):
    """Patch ``model`` (an HF causal LM, possibly wrapped by PEFT) in place and return it.

    After patching, ``model(input_ids=..., attention_mask=..., labels=...)`` returns a
    :class:`FusedOutput` whose ``loss`` is the objective summed over loss tokens. ``reference``
    may be ``"adapter"`` (PEFT models: the adapter disabled) or a frozen model; ``teacher`` and
    ``old_policy`` are frozen models. Teacher and reference must share the vocabulary.
    ``fused=False`` computes the same output from materialised logits (for comparison).
    """
    obj = parse_objective(objective)
    check_fusable(model)
    base = _unwrap(model)
    lm_parts(base)
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
        peft_owner=model if hasattr(model, "disable_adapter") else None, fused=fused))
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
