"""``final/``: the trained model as a complete standard HF folder, checked after writing.

Under every engine the weights are gathered first (:func:`deft.train.sharding.gather_state_dict`;
under ZeRO-3 and FSDP a process holds only slices), written into ``final.tmp/`` and renamed into
place only after :func:`check_complete` has compared every tensor in the written files with the
model's own state dict, built from its config on the ``meta`` device (no memory, no engine
involved): a tensor that is missing (other than the tied copy of a saved one), empty or of
another shape makes the run stop with :class:`IncompleteSaveError`, and no ``final/`` appears.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .sharding import zero3_init_disabled

__all__ = ["IncompleteSaveError", "expected_tensors", "saved_tensors", "check_complete", "check_adapter_complete",
           "save_gathered"]


class IncompleteSaveError(ValueError):
    """The written model lacks tensors, or holds empty or misshapen ones."""


def expected_tensors(config, trust_remote_code: bool = False) -> tuple[dict, list]:
    """``(name -> shape, groups of names sharing one tensor)`` of the state dict of the causal LM
    that ``config`` describes, built on the ``meta`` device."""
    from transformers import AutoModelForCausalLM

    extra = {"trust_remote_code": True} if trust_remote_code else {}
    with zero3_init_disabled(), torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, **extra)
    shapes = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    by_tensor: dict = {}
    for name, param in skeleton.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(param), []).append(name)
    return shapes, [names for names in by_tensor.values() if len(names) > 1]


def saved_tensors(folder: str | Path, stem: str = "model") -> dict:
    """``name -> shape`` of every tensor in a folder's ``model.safetensors`` (or its shards;
    ``stem="adapter_model"`` for a PEFT adapter)."""
    from safetensors import safe_open

    folder = Path(folder)
    index = folder / f"{stem}.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [
        f"{stem}.safetensors"]
    shapes = {}
    for name in files:
        if not (folder / name).exists():
            raise IncompleteSaveError(f"{folder}: {name} was not written")
        with safe_open(str(folder / name), "pt") as f:
            for key in f.keys():
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def check_complete(folder: str | Path, config, trust_remote_code: bool = False) -> None:
    """Raise :class:`IncompleteSaveError` unless ``folder`` holds every tensor of the model that
    ``config`` describes, whole: a tied tensor may be saved under one of its names."""
    expected, groups = expected_tensors(config, trust_remote_code)
    saved = saved_tensors(folder)
    alias = {name: group for group in groups for name in group}
    problems = []
    for name, shape in expected.items():
        if name in saved:
            if saved[name] != shape:
                problems.append(f"{name} has shape {list(saved[name])}, expected {list(shape)}")
        elif not any(other in saved for other in alias.get(name, ())):
            problems.append(f"{name} is missing")
    if problems:
        raise IncompleteSaveError(
            f"{folder}: the saved model is incomplete ({len(problems)} of {len(expected)} tensors empty, misshapen "
            f"or missing; first: {problems[0]}); under DeepSpeed ZeRO-3 or FSDP the weights must be gathered before "
            "saving")


def check_adapter_complete(folder: str | Path, model) -> None:
    """Raise :class:`IncompleteSaveError` unless the PEFT adapter written in ``folder`` holds one
    whole tensor per trainable parameter of ``model`` (shapes compared as a multiset: PEFT renames
    the keys; ZeRO-3 partitioned parameters count by their whole shape)."""
    from ..model.parts import full_shape

    expected = sorted(tuple(full_shape(p)) for p in model.parameters() if p.requires_grad)
    saved = sorted(saved_tensors(folder, "adapter_model").values())
    if saved != expected:
        empty = sum(1 for shape in saved if 0 in shape)
        raise IncompleteSaveError(f"{folder}: the saved adapter is incomplete ({len(saved)} tensors, {empty} empty; "
                                  f"the model has {len(expected)} trainable tensors); under DeepSpeed ZeRO-3 or FSDP "
                                  "the weights must be gathered before saving")


def save_gathered(model, folder: str | Path, state: dict, processing_class=None, trust_remote_code=False) -> None:
    """Write ``model`` with the complete ``state`` (from :func:`deft.train.sharding.gather_state_dict`)
    as a standard HF folder (a PEFT model: its adapter, as PEFT saves it), into a temporary folder
    first; each file is moved into ``folder`` only once :func:`check_complete` (or
    :func:`check_adapter_complete`) accepted them, so other files in ``folder`` (checkpoints) stay
    and a refused save leaves nothing behind."""
    import os
    import shutil
    import tempfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".deft-save-", dir=folder))
    try:
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        if processing_class is not None:
            processing_class.save_pretrained(tmp)
        if hasattr(model, "peft_config"):
            check_adapter_complete(tmp, model)
        else:
            check_complete(tmp, model.config, trust_remote_code)
        for path in sorted(tmp.iterdir()):
            target = folder / path.name
            if target.is_dir() and path.is_dir():
                shutil.rmtree(target)
            os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
