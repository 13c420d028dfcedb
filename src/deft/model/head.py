"""The LM head's effective weight and bias, including a LoRA adapter on the head itself.

The fused loss multiplies hidden states by the head's weight chunk by chunk, so it needs the
weight ``[V, H]`` the head applies, not its module. For a plain ``nn.Linear`` (or PEFT's
``modules_to_save`` copy, which forwards ``.weight``) that is ``head.weight``. For a PEFT LoRA
layer on the head (``target_modules`` including ``lm_head``) the head computes
``x W0^T + scale * (x A^T) B^T`` (Hu et al. 2021, LoRA Eq. 3), i.e. ``x (W0 + scale B A)^T``:
the adapter's delta joins the weight once per forward, so autograd carries the fused loss's
``dL/dW`` to ``A`` and ``B`` (``dB = scale dW A^T``, ``dA = scale B^T dW``). The cost is one
extra ``[V, H]`` tensor per forward. Variants that are not a weight delta (dropout > 0 on the
head's LoRA branch in training, DoRA and other LoRA variants, a LoRA bias) are refused with a
clear error rather than silently ignored.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["head_weight_and_bias", "check_head_supported"]


def _lora_parts(head):
    """``(lora_A, lora_B, scaling, dropout, variants)`` of a PEFT LoRA layer, else ``None``."""
    if not (hasattr(head, "lora_A") and hasattr(head, "lora_B") and hasattr(head, "base_layer")):
        return None
    return head.lora_A, head.lora_B, head.scaling, getattr(head, "lora_dropout", {}), getattr(head, "lora_variant", {})


def _active(head) -> list:
    """Names of the LoRA adapters of ``head`` that change its output now."""
    if getattr(head, "disable_adapters", False) or getattr(head, "merged", False):
        return []  # disabled, or already merged into the base weight
    names = head.active_adapters
    names = [names] if isinstance(names, str) else list(names)
    return [name for name in names if name in head.lora_A]


def check_head_supported(head, training: bool = True) -> None:
    """Raise ``ValueError`` when the head's LoRA adapter is not a plain weight delta."""
    parts = _lora_parts(head)
    if parts is None:
        return
    _, lora_b, _, dropout, variants = parts
    for name in _active(head):
        if name in variants:
            raise ValueError(f"the LM head's LoRA adapter '{name}' uses a LoRA variant "
                             f"({type(variants[name]).__name__}, "
                             "e.g. DoRA), which the fused loss cannot merge; leave lm_head out of target_modules "
                             "or train with fused=false")
        if getattr(lora_b[name], "bias", None) is not None:
            raise ValueError(f"the LM head's LoRA adapter '{name}' has a bias (lora_bias=True), which the fused loss "
                             "does not support; leave lm_head out of target_modules or train with fused=false")
        p = getattr(dropout[name], "p", 0.0) if name in dropout else 0.0
        if training and p:
            raise ValueError(f"the LM head's LoRA adapter '{name}' has lora_dropout={p}: dropout on the head's input "
                             "cannot be merged into its weight; set lora_dropout=0 or leave lm_head out of "
                             "target_modules")


def head_weight_and_bias(head, training: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The weight ``[V, H]`` and bias ``[V]`` (or ``None``) that ``head`` applies.

    With an active LoRA adapter on the head, the weight is ``W0 + Σ_a scale_a B_a A_a``
    (differentiable with respect to ``A_a`` and ``B_a``); otherwise ``head.weight`` itself.
    """
    parts = _lora_parts(head)
    if parts is None:
        return _whole(head.weight), _whole(getattr(head, "bias", None))
    check_head_supported(head, training)
    base = head.base_layer
    weight = _whole(base.weight)
    lora_a, lora_b, scaling, _, _ = parts
    for name in _active(head):
        a, b = _whole(lora_a[name].weight), _whole(lora_b[name].weight)  # [r, H], [V, r]
        delta = (b @ a) * scaling[name]
        if getattr(head, "fan_in_fan_out", False):
            delta = delta.T
        weight = weight + delta.to(weight.dtype)
    return weight, _whole(getattr(base, "bias", None))


def _whole(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A tensor whole on this process. An FSDP2 ``DTensor`` shard read outside its module's forward
    (HF wraps each trainable LoRA layer as its own FSDP unit, so a LoRA on the head is never
    unsharded by the root) is all-gathered, differentiably: each process's gradient of the whole
    tensor is a partial one, averaged back into the shards (``Partial("avg")``), as FSDP averages
    the gradients of the parameters it unshards itself. Anything else is returned as it is. Under
    DeepSpeed ZeRO-3 the engine gathers a parameter read inside the root module's forward and
    registers it as that module's external parameter, so it needs nothing here."""
    if tensor is None or not torch.distributed.is_available():
        return tensor
    from torch.distributed.tensor import DTensor, Partial

    if not isinstance(tensor, DTensor):
        return tensor
    return tensor.full_tensor(grad_placements=[Partial("avg")] * tensor.device_mesh.ndim)
