"""What a run needs to know about the engine that shards it (DDP, FSDP2, DeepSpeed ZeRO-2/3).

deft has no distributed code of its own: ``accelerate launch`` picks the engine and HF's
``Trainer`` drives it. Three things still depend on the engine, and live here:

* **Whole weights.** Under ZeRO-3 every process holds a slice of each parameter (a module's
  ``weight`` reads as an empty tensor outside its forward) and under FSDP2 a ``DTensor`` shard, so
  ``model.state_dict()`` is not the model. :func:`gather_state_dict` returns the complete state
  dict (ZeRO-3: the engine's consolidated state dict, gathered one module at a time; FSDP2:
  ``get_model_state_dict(full_state_dict=True)``). It is a collective call: every process must
  make it, in the same order.
* **Frozen models.** The reference, teacher and psft old-policy models are replicated on every
  process: they never enter an engine, so their parameters must never be partitioned.
  :func:`zero3_init_disabled` builds models whole while ZeRO-3's partitioned initialisation
  (``zero3_init_flag``) is on for the trained model.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

__all__ = ["engine_name", "fallback_notice", "sharding_of", "is_sharded", "gather_state_dict", "zero3_init_disabled",
           "copy_weights_into", "is_partitioned", "whole_copy", "is_main_rank"]


def engine_name(accelerator) -> str:
    """What accelerate set up: ``"zero3"``, ``"zero2"``, ``"zero1"``, ``"fsdp2"``, ``"fsdp1"``,
    ``"ddp"`` or ``"single"`` (for messages: decisions read the model, :func:`sharding_of`)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return f"zero{accelerator.state.deepspeed_plugin.zero_stage}"
    if kind == DistributedType.FSDP:
        return "fsdp2" if getattr(accelerator, "is_fsdp2", False) else "fsdp1"
    return "ddp" if accelerator.num_processes > 1 else "single"


def fallback_notice(accelerator) -> Optional[str]:
    """A line to print when the launch asked for FSDP but accelerate set up something else (it
    sets up FSDP only on accelerators: a CPU launch of an FSDP config runs DDP), else ``None``."""
    import os

    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    got = engine_name(accelerator)
    if asked and not got.startswith("fsdp"):
        return (f"the accelerate config asks for FSDP but accelerate set up {got.upper()} (it runs FSDP only on "
                "GPUs and other accelerators): every process holds the whole model")
    return None


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The module under a DDP or DeepSpeed engine wrapper (a PEFT model stays a PEFT model)."""
    return model.module if isinstance(getattr(model, "module", None), torch.nn.Module) else model


def _is_dtensor(tensor) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def sharding_of(model: torch.nn.Module) -> str:
    """How the parameters of a prepared ``model`` are held, read from the parameters themselves:
    ``"zero3"`` (DeepSpeed partitions: ``ds_id``), ``"fsdp"`` (FSDP2 ``DTensor`` shards or an FSDP1
    wrapper) or ``"none"`` (whole on this process: one process, DDP, ZeRO-1/2)."""
    inner = _inner(model)
    if is_partitioned(inner):
        return "zero3"
    if any(_is_dtensor(p) for p in inner.parameters()):
        return "fsdp"
    if torch.distributed.is_available():
        from torch.distributed.fsdp import FullyShardedDataParallel

        if any(isinstance(m, FullyShardedDataParallel) for m in inner.modules()):
            return "fsdp"
    return "none"


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether no process holds the whole parameters of ``model`` (ZeRO-3, FSDP)."""
    return sharding_of(model) != "none"


def is_main_rank() -> bool:
    """Rank 0 of the process group, or the only process."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def gather_state_dict(model: torch.nn.Module, everywhere: bool = False) -> Optional[dict]:
    """The complete state dict (name -> CPU tensor) of a prepared ``model`` (the engine's wrapper,
    HF ``Trainer.model_wrapped``, or the module it wraps), under any engine.

    Collective under ZeRO-3 and FSDP: every process must call it. Returns the dict on the main
    process and ``None`` on the others, or on every process with ``everywhere`` (the psft
    old-policy refresh needs the weights on each). Unsharded models need no communication."""
    main = is_main_rank()
    kind = sharding_of(model)
    if kind == "zero3":
        return _zero3_state_dict(_inner(model), everywhere, main)
    if kind == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere)
        state = get_model_state_dict(_inner(model), options=options)
        return {k: v.detach().cpu() for k, v in state.items()} if (everywhere or main) else None
    if not (everywhere or main):
        return None
    return {k: v.detach().cpu() for k, v in _inner(model).state_dict().items()}


def _zero3_state_dict(module, everywhere: bool, main: bool) -> Optional[dict]:
    """ZeRO-3: gather each module's parameter slices in turn (``GatheredParameters``) and copy the
    whole tensors to CPU; tied parameters (one ``ds_id``) stay one tensor under both names."""
    import deepspeed

    keep = everywhere or main
    state, by_id = ({} if keep else None), {}
    for prefix, sub in module.named_modules():
        params = list(sub.parameters(recurse=False))
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if keep:
                for name, param in sub.named_parameters(recurse=False):
                    key = f"{prefix}.{name}" if prefix else name
                    ident = getattr(param, "ds_id", id(param))
                    state[key] = state[by_id[ident]] if ident in by_id else param.detach().cpu().clone()
                    by_id.setdefault(ident, key)
                for name, buf in sub.named_buffers(recurse=False):
                    if name not in sub._non_persistent_buffers_set:
                        state[f"{prefix}.{name}" if prefix else name] = buf.detach().cpu().clone()
    return state


def _hf_deepspeed_config():
    """HF's active DeepSpeed config object, or ``None``. transformers keeps only a weak reference to
    it (in ``transformers.integrations.deepspeed``), so whoever made it (``TrainingArguments``)
    decides how long ZeRO-3 stays switched on."""
    from transformers.integrations import deepspeed

    ref = getattr(deepspeed, "_hf_deepspeed_config_weak_ref", None)
    return ref() if ref is not None else None


@contextlib.contextmanager
def zero3_init_disabled():
    """Models built inside are whole (not partitioned by ZeRO-3's ``deepspeed.zero.Init``), also
    while HF's DeepSpeed ZeRO-3 config is active; outside DeepSpeed it does nothing. HF's own config
    object is switched back on after, so ZeRO-3 stays on exactly as long as it would have without
    this (once the run's ``TrainingArguments`` is gone, a model loaded later in the process is whole)."""
    from transformers.integrations import is_deepspeed_zero3_enabled, set_hf_deepspeed_config, unset_hf_deepspeed_config

    original = _hf_deepspeed_config()
    if original is None or not is_deepspeed_zero3_enabled():
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        set_hf_deepspeed_config(original)


def copy_weights_into(target: torch.nn.Module, state: dict) -> None:
    """Load a complete state dict into a replicated module (every key must match, none left out)."""
    missing, unexpected = target.load_state_dict(state, strict=False)
    tied = _tied_names(target)
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"the gathered weights do not match the model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")


def _tied_names(module: torch.nn.Module) -> set:
    """Names of parameters that are another name's tensor (tied embeddings)."""
    seen, tied = {}, set()
    for name, param in module.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.update((name, seen[id(param)]))
        seen.setdefault(id(param), name)
    return tied


def is_partitioned(model: torch.nn.Module) -> bool:
    """Whether DeepSpeed ZeRO-3 partitioned ``model``'s parameters (it was built under
    ``deepspeed.zero.Init``, as ``from_pretrained`` does once a ZeRO-3 config is active)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def whole_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (an HF causal LM, possibly under a PEFT adapter) whole on this process:
    ``copy.deepcopy`` for a whole model; for a ZeRO-3 partitioned one, the same architecture built
    outside ``zero.Init`` holding the gathered weights. Every process must call it (it gathers)."""
    import copy

    if not is_partitioned(model):
        return copy.deepcopy(model)
    import deepspeed
    from transformers import AutoModelForCausalLM

    from ..model.parts import unwrap

    base = unwrap(model)
    dtype = next(p.dtype for p in model.parameters())
    with zero3_init_disabled():
        replica = AutoModelForCausalLM.from_config(base.config, dtype=dtype)
        if hasattr(model, "peft_config"):
            from peft import get_peft_model

            replica = get_peft_model(replica, model.peft_config[model.active_adapter])
    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        copy_weights_into(replica, {k: v.detach().clone() for k, v in model.state_dict().items()})
    return replica
