"""Patch a Hugging Face causal LM so that its training forward returns the fused loss.

The patched ``forward`` runs the model's own decoder (``model.get_decoder()``, the generic HF
interface shared by Llama, Qwen2, Mistral, Gemma, Phi, ...) to get the final hidden states
``[B, T, H]`` and hands them with the LM-head weight ``[V, H]`` (tied embeddings included, a LoRA
delta on the head merged in, :mod:`deft.model.head`) to :func:`deft.fused_token_loss`; the
``[B, T, V]`` logits are never formed. Labels follow the HF convention (aligned with
``input_ids``, ``-100`` = no loss) and are shifted inside: position ``t`` predicts
``labels[t + 1]``.

Because the call goes through ``model(...)``, wrappers such as DDP, FSDP, DeepSpeed and PEFT see a
normal forward. Calls without ``labels`` (generation, evaluation) use the original forward.

What the objective needs (:data:`deft.objectives.NEEDS`) is provided by need source: a frozen
model run on the same inputs for ``"model"`` needs (reference, teacher; with a PEFT adapter the
reference may be the same model with its adapter disabled), the label log-probabilities of a frozen
snapshot for ``"label_logprobs"`` needs (``psft``'s old policy), a keyword of the call for
``"batch"`` needs (a ``[B, T]`` tensor aligned with ``input_ids``), the engine for statistics.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass, field
from typing import Optional

import torch
from transformers.utils import ModelOutput

from ..fused import fused_token_loss, token_loss
from ..objectives import NEEDS, Objective, parse_objective
from ..objectives.needs import missing_error
from .head import check_head_supported, head_weight_and_bias
from .parts import check_fusable, decoder_output, full_shape, last_hidden, lm_parts, router_aux_loss, unwrap

__all__ = ["FusedLossConfig", "FusedOutput", "patch_fused_loss", "unpatch_fused_loss", "lm_parts",
           "check_fusable", "is_patched", "fused_extras"]


@dataclass
class FusedLossConfig:
    """What the patched forward computes.

    ``frozen``: need name -> the frozen model providing it (``"ref"``: a frozen causal LM, or
    ``"adapter"`` for the PEFT model itself with its adapter disabled; ``"teacher"``: a frozen
    causal LM with the same vocabulary; ``"old_logprobs"``: a frozen snapshot of the model).
    ``fused=False`` forms the logits and uses the plain :func:`deft.token_loss` (the reference
    point of benchmarks and checks). ``reduction``: the loss of a call without
    ``num_items_in_batch``, ``"sum"`` or ``"mean"`` over its loss tokens.
    """

    objective: Objective
    chunk_size: Optional[int] = None
    frozen: dict = field(default_factory=dict)
    peft_owner: object = None  # the PEFT wrapper whose adapter can be disabled
    fused: bool = True
    reduction: str = "sum"
    check_inputs: bool = True


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
    Attributes that are not dict keys: ``num_tokens`` (the denominator of the micro-batch's mean:
    its loss tokens, or its selected tokens for ``OnlyTopP``-style objectives) and ``stats`` (the
    per-token statistics of :func:`deft.fused_token_loss`).
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


def _frozen_head(model, adapter_disabled_of, input_ids, attention_mask, position_ids, kwargs):
    """``(hidden [B, T, H'], weight [V, H'], bias)`` of a frozen model, without gradients."""
    context = adapter_disabled_of.disable_adapter() if adapter_disabled_of is not None else contextlib.nullcontext()
    with torch.no_grad(), context:
        hidden = last_hidden(decoder_output(model, input_ids, attention_mask, position_ids, **kwargs))
        _, head = lm_parts(model)
        weight, bias = head_weight_and_bias(head, training=False)
        return hidden, weight.detach(), None if bias is None else bias.detach()


def _need_inputs(cfg: FusedLossConfig, shift_labels, batch_values: dict, call) -> dict:
    """Argument name -> tensor for every need of the objective (``call`` = the model inputs)."""
    out = {}
    for name in sorted(cfg.objective.needs):
        need = NEEDS[name]
        if need.source == "batch":
            if batch_values.get(name) is None:
                raise missing_error(cfg.objective.spec, need, "patch")
            out[name] = batch_values[name][:, 1:]
        elif need.source in ("model", "label_logprobs"):
            frozen = cfg.frozen[name]
            adapter = cfg.peft_owner if frozen == "adapter" else None
            h, w, b = _frozen_head(cfg.peft_owner if frozen == "adapter" else frozen, adapter, *call)
            if need.source == "model":
                out.update({f"{name}_hidden": h[:, :-1], f"{name}_weight": w})
                if b is not None:
                    out[f"{name}_bias"] = b
            else:
                with torch.no_grad():
                    nll = fused_token_loss(h[:, :-1], w, shift_labels, "nll", bias=b, reduction="none",
                                           chunk_size=cfg.chunk_size, check_inputs=False)
                out[name] = -nll
    return out


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
    batch_values = {name: kwargs.pop(name, None) for name, need in NEEDS.items() if need.source == "batch"}
    decoded = decoder_output(self, input_ids, attention_mask, position_ids,
                             **(dict(kwargs, output_router_logits=True) if router else kwargs))
    hidden = last_hidden(decoded)
    _, head = lm_parts(self)
    weight, bias = head_weight_and_bias(head, training=self.training)
    # per-token tensors follow the hidden states (a model split over devices ends on its last one)
    shift_labels = labels[:, 1:].to(hidden.device)
    extra = _need_inputs(cfg, shift_labels, batch_values, (input_ids, attention_mask, position_ids, kwargs))
    extra = {key: value.to(hidden.device) for key, value in extra.items()}
    weights = None if token_weights is None else token_weights[:, 1:].to(hidden.device)
    if not cfg.fused:
        loss, stats = _plain_loss(hidden[:, :-1], weight, bias, shift_labels, cfg, weights, extra)
    else:
        loss, stats = fused_token_loss(
            hidden[:, :-1], weight, shift_labels, cfg.objective, bias=bias, reduction="sum",
            chunk_size=cfg.chunk_size, token_weights=weights, inputs=extra, return_stats=True,
            check_inputs=cfg.check_inputs,
        )
    aux = None
    if router:
        coef, aux = router_aux_loss(self, getattr(decoded, "router_logits", None), attention_mask)
        # weighted by this micro-batch's loss tokens: after the division by the step's loss tokens
        # one micro-batch gives HF's ``mean loss + coef * aux`` exactly, several their token-weighted mean
        loss = loss + coef * aux.to(loss.device, loss.dtype) * stats["num_tokens"]
    if num_items is not None:  # HF's convention: the sum over the step's loss tokens
        loss = loss / torch.clamp(torch.as_tensor(num_items, device=loss.device, dtype=loss.dtype), min=1)
    elif cfg.reduction == "mean":
        loss = loss / max(stats["num_tokens"], 1)
    out = FusedOutput.make(loss, stats["num_tokens"], stats, aux_loss=aux)
    # engines may rebuild the output from its items (FSDP2's and accelerate's mixed-precision casts),
    # which drops the plain attributes: the last call's are kept on the model too (fused_extras)
    object.__setattr__(self, "_deft_last_extras", (stats["num_tokens"], stats))
    return out.to_tuple() if return_dict is False else out


def fused_extras(model, outputs) -> tuple[int, dict]:
    """``(num_tokens, stats)`` of a patched training forward's output: its attributes, or, when a
    wrapper rebuilt the output from its items (mixed-precision casts of FSDP2 or accelerate), those
    of the last call of ``model`` (the patched model under any wrapper)."""
    if hasattr(outputs, "stats"):
        return outputs.num_tokens, outputs.stats
    extras = getattr(unwrap(model), "_deft_last_extras", None)
    if extras is None:
        raise ValueError("the model's output carries no fused-loss statistics: patch it with patch_fused_loss "
                         "before training")
    return extras


def _plain_loss(hidden, weight, bias, labels, cfg: FusedLossConfig, weights, extra):
    """The same loss and statistics from materialised logits (``fused=False``): the plain HF way."""
    logits = torch.nn.functional.linear(hidden, weight, bias)
    inputs = {}
    for key, value in extra.items():
        if key.endswith("_hidden"):
            name = key[: -len("_hidden")]
            inputs[f"{name}_logits"] = torch.nn.functional.linear(value, extra[f"{name}_weight"],
                                                                  extra.get(f"{name}_bias"))
        elif not key.endswith(("_weight", "_bias")):
            inputs[key] = value
    return token_loss(logits, labels, cfg.objective, reduction="sum", token_weights=weights, inputs=inputs,
                      return_stats=True, check_inputs=cfg.check_inputs)


def _frozen_models(obj: Objective, model, given: dict) -> dict:
    """Need name -> frozen model for every need a frozen model provides; checked and frozen."""
    base = unwrap(model)
    vocab = full_shape(base.get_output_embeddings().weight)[0]
    frozen = {}
    for name in sorted(obj.needs):
        need = NEEDS[name]
        if need.source not in ("model", "label_logprobs"):
            continue
        other = given.get(name)
        if other is None:
            raise missing_error(obj.spec, need, "patch")
        if other == "adapter":
            if need.source != "model" or not hasattr(model, "disable_adapter"):
                raise ValueError(f"{need.patch_arg or name}='adapter' needs a PEFT model (train with LoRA) or pass "
                                 "a frozen model")
        else:
            other_vocab = full_shape(unwrap(other).get_output_embeddings().weight)[0]
            if other_vocab != vocab:
                raise ValueError(f"the {need.patch_arg or name} model's vocabulary ({other_vocab}) differs from the "
                                 f"model's ({vocab}); it must use the same tokenizer")
            other.requires_grad_(False).eval()
        frozen[name] = other
    return frozen


def patch_fused_loss(model, objective="deft", *, chunk_size=None, reference=None, teacher=None,
                     old_policy=None, models: Optional[dict] = None, fused=True, reduction="sum",
                     check_inputs=True):
    """Patch ``model`` (an HF causal LM, possibly wrapped by PEFT) in place and return it.

    After patching, ``model(input_ids=..., attention_mask=..., labels=...)`` returns a
    :class:`FusedOutput` (indexable like HF outputs) whose ``loss`` is the objective summed over
    loss tokens (``reduction="sum"``, for trainers that divide by the step's loss tokens) or their
    mean (``reduction="mean"``, HF's per-call convention); a call that passes
    ``num_items_in_batch`` (``transformers.Trainer`` does) gets the sum divided by it, so the patched
    model trains correctly in a plain HF Trainer, gradient accumulation included.

    Frozen models for the objective's needs: ``reference`` (``"adapter"`` for a PEFT model with its
    adapter disabled, or a frozen model), ``teacher``, ``old_policy`` (a frozen snapshot), and
    ``models`` (need name -> model) for needs added with :func:`deft.objectives.register_need`.
    They must share the vocabulary. Models the objective does not need are ignored.
    ``fused=False`` computes the same output from materialised logits (for comparison).
    ``check_inputs`` is passed to :func:`deft.fused_token_loss` (one ``isfinite`` reduction per input).

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
    base = unwrap(model)
    _, head = lm_parts(base)
    if fused:
        check_head_supported(head, training=True)
    by_arg = {"reference": reference, "teacher": teacher, "old_policy": old_policy}
    given = {name: by_arg.get(need.patch_arg) for name, need in NEEDS.items()}
    given.update({k: v for k, v in (models or {}).items() if v is not None})
    frozen = _frozen_models(obj, model, {k: v for k, v in given.items() if v is not None})
    if not is_patched(base):
        base._deft_original_forward = base.forward
    # plain attributes (object.__setattr__): nn.Module would register modules as children
    object.__setattr__(base, "_deft_config", FusedLossConfig(
        obj, chunk_size=chunk_size, frozen=frozen, peft_owner=model if hasattr(model, "disable_adapter") else None,
        fused=fused, reduction=reduction, check_inputs=check_inputs))
    object.__setattr__(base, "forward", types.MethodType(_fused_forward, base))
    return model


def is_patched(model) -> bool:
    return hasattr(unwrap(model), "_deft_original_forward")


def unpatch_fused_loss(model):
    """Restore the original forward."""
    base = unwrap(model)
    if is_patched(base):
        base.forward = base._deft_original_forward
        for attr in ("_deft_original_forward", "_deft_config", "_deft_last_extras"):
            if hasattr(base, attr):
                delattr(base, attr)
    return model
