"""Training configuration: one dataclass, every field with help text, loadable from YAML and
overridable by ``key=value`` pairs or ``--flag value`` options.

Defaults follow the paper's setup (Appendix E.3): AdamW, learning rate 5e-5, cosine decay with a
warm-up ratio of 0.1, one epoch. ``preset: paper`` picks the paper's learning rate for known
models (2e-5 for Llama-3.1-8B).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

__all__ = ["TrainConfig", "PAPER_PRESETS", "load_config", "config_to_dict", "apply_overrides"]


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Every option of ``deft train``."""

    # what to train
    model: str = _f("smollm2-135m", "model: the embedded 'smollm2-135m', an HF hub id, a local HF directory or a .gguf file")
    data: Optional[str] = _f(None, "training records (JSONL/JSON/Parquet file or datasets directory) in deft's record format")
    eval_data: Optional[str] = _f(None, "optional held-out records; their loss is reported at each eval step")
    objective: str = _f("deft", "objective spec, e.g. deft, nll, power:alpha=0.5, eaft:k=20 (see 'deft objectives')")
    output_dir: str = _f("runs/train", "output directory: config.yaml, metrics.jsonl, checkpoints, final/")
    # schedule
    max_steps: int = _f(-1, "optimizer steps to run; -1 = run --epochs")
    epochs: float = _f(1.0, "passes over the training data (used when max_steps is -1)")
    batch_size: int = _f(4, "examples per micro-batch per process")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    lr: float = _f(5e-5, "peak learning rate (AdamW)")
    lr_scheduler: str = _f("cosine", "learning-rate schedule: cosine, linear, constant, constant_with_warmup")
    warmup_ratio: float = _f(0.1, "fraction of the steps spent warming up the learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 disables)")
    seed: int = _f(42, "random seed (data order, initialisation of LoRA)")
    preset: Optional[str] = _f(None, "'paper': the paper's learning rate for known models (2e-5 for Llama-3.1-8B)")
    # data
    max_length: int = _f(1024, "maximum tokens per example (or per packed row)")
    truncation: str = _f("left", "over-long examples: left (drop prompt tokens from the left), right, drop")
    template: str = _f("auto", "prompt format: auto (the tokenizer's chat template, else plain), chat, or a plain template name")
    all_turns: bool = _f(False, "train on every assistant turn of multi-turn records, not only the last")
    packing: bool = _f(False, "pack several examples per row (position ids restart per example)")
    skip_invalid: bool = _f(False, "drop invalid records (reported as a count) instead of stopping")
    # model
    dtype: str = _f("float32", "training dtype of the weights: float32 or bfloat16")
    fused: bool = _f(True, "compute the loss with the fused chunked engine (never holds [tokens, vocab] logits)")
    chunk_size: Optional[int] = _f(None, "rows per chunk of the fused loss (default: chosen from tokens, hidden size, vocab)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward to save memory")
    lora_rank: int = _f(0, "LoRA rank; 0 = full fine-tuning")
    lora_alpha: int = _f(16, "LoRA alpha")
    lora_dropout: float = _f(0.0, "LoRA dropout")
    target_modules: str = _f("all-linear", "LoRA target modules: all-linear or a comma-separated list (q_proj,v_proj)")
    reference_model: Optional[str] = _f(None, "reference model for sft_kl/asft (default: the initial model; with LoRA the adapter is disabled)")
    teacher_model: Optional[str] = _f(None, "teacher model for kd/kd_hybrid/target_sft (same vocabulary)")
    old_policy_refresh: int = _f(16, "psft: optimizer steps between refreshes of the old-policy snapshot")
    trust_remote_code: bool = _f(False, "allow model repositories to run their own code (off unless you trust it)")
    # output
    save_steps: int = _f(0, "save a checkpoint every N optimizer steps (0: only at the end)")
    save_total_limit: int = _f(2, "keep at most this many checkpoints")
    eval_steps: int = _f(0, "evaluate --eval-data every N steps (0: only at the end)")
    logging_steps: int = _f(1, "progress-bar refresh period in steps (metrics.jsonl gets every step)")
    report_to: str = _f("none", "extra loggers: none, tensorboard, wandb (comma-separated)")
    resume: bool = _f(False, "continue from the latest complete checkpoint in output_dir")
    num_workers: int = _f(0, "data-loader worker processes")
    progress: bool = _f(True, "show a progress bar")


PAPER_PRESETS = {  # model-name pattern -> overrides (paper Appendix E.3)
    r"llama-?3\.1-?8b": {"lr": 2e-5},
    r".*": {"lr": 5e-5, "lr_scheduler": "cosine", "warmup_ratio": 0.1, "epochs": 1.0},
}

_CHOICES = {
    "truncation": ("left", "right", "drop"),
    "lr_scheduler": ("cosine", "linear", "constant", "constant_with_warmup"),
    "dtype": ("float32", "bfloat16", "float16"),
}


def _field_type(name: str):
    hint = get_type_hints(TrainConfig)[name]
    if get_origin(hint) is Union:
        hint = next(a for a in get_args(hint) if a is not type(None))
    return hint


def _convert(name: str, raw: Any, where: str) -> Any:
    kind = _field_type(name)
    if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "~") and name not in ("report_to",)):
        return None
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        if kind is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: '{name}' must be {kind.__name__}, got {raw!r}") from None


def _check(cfg: TrainConfig) -> TrainConfig:
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise ValueError(f"'{name}' must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")
    for name in ("batch_size", "grad_accum", "max_length"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"'{name}' must be at least 1, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise ValueError(f"'lr' must be positive, got {cfg.lr}")
    if cfg.preset not in (None, "paper"):
        raise ValueError(f"'preset' must be 'paper' or unset, got {cfg.preset!r}")
    return cfg


def apply_overrides(cfg: TrainConfig, overrides: dict, where: str = "command line") -> TrainConfig:
    """Return ``cfg`` with ``overrides`` (field name -> raw value) applied and checked."""
    names = {f.name for f in fields(TrainConfig)}
    values = {}
    for key, raw in overrides.items():
        name = key.replace("-", "_")
        if name not in names:
            close = [n for n in names if n.startswith(name[:3])]
            hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
            raise ValueError(f"{where}: unknown option '{key}'{hint}; see 'deft train --help'")
        values[name] = _convert(name, raw, where)
    return _check(dataclasses.replace(cfg, **values))


def apply_preset(cfg: TrainConfig, explicit: set) -> TrainConfig:
    """Apply the paper preset for ``cfg.model`` to the fields the user did not set explicitly."""
    if cfg.preset != "paper":
        return cfg
    values = {}
    for pattern, preset in PAPER_PRESETS.items():
        if re.search(pattern, cfg.model.lower()):
            for key, value in preset.items():
                if key not in explicit and key not in values:
                    values[key] = value
    return dataclasses.replace(cfg, **values)


def load_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> TrainConfig:
    """Load a YAML config (``yaml.safe_load``), then apply ``overrides`` and the preset."""
    cfg = TrainConfig()
    explicit = set()
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ValueError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must be a mapping of option: value")
        cfg = apply_overrides(cfg, data, where=str(path))
        explicit |= {k.replace("-", "_") for k in data}
    if overrides:
        cfg = apply_overrides(cfg, overrides)
        explicit |= {k.replace("-", "_") for k in overrides}
    return apply_preset(cfg, explicit)


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def field_help() -> dict[str, str]:
    """Help text of every field."""
    return {f.name: f.metadata["help"] for f in fields(TrainConfig)}
