"""Training configuration: one dataclass on :mod:`deft.config`, every field with its help text,
range check and aliases (the HF ``TrainingArguments`` / TRL names are accepted too), loadable from
YAML and overridable by ``key=value`` pairs or ``--flag value`` options.

Defaults follow the paper's setup (Appendix E.3): AdamW, learning rate 5e-5, cosine decay with a
warm-up ratio of 0.1, one epoch. ``preset: paper`` picks the paper's learning rate for known
models (2e-5 for Llama-3.1-8B). ``protocol: paper`` follows the reference code: micro-batch loss
normalisation and the reference's literal prompt template.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from dataclasses import dataclass
from typing import Optional

from .. import config as _config
from ..config import ConfigError, config_to_dict, explicit_fields, option

__all__ = ["TrainConfig", "PAPER_PRESETS", "REPORTERS", "load_config", "config_to_dict", "apply_overrides",
           "field_help"]

# tracker name -> (module that must import, extra that installs it)
REPORTERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
             "mlflow": ("mlflow", "mlflow")}

OLD_POLICY_REFRESH = 16  # psft: optimizer steps between refreshes of the old policy (deft train and DeftSFTTrainer)


def _check_report_to(names: list[str]) -> Optional[str]:
    unknown = [n for n in names if n not in ("none", *REPORTERS)]
    if unknown:
        return f"must be none or a comma-separated list of {', '.join(REPORTERS)} (unknown: {', '.join(unknown)})"
    return None


def _check_model_key(value: str) -> Optional[str]:
    from ..data.paper import PAPER_MODELS

    if value.lower() not in PAPER_MODELS:
        return f"must be one of the reference's model keys ({', '.join(PAPER_MODELS)})"
    return None


@dataclass
class TrainConfig:
    """Every option of ``deft train``."""

    COMMAND = "train"

    # what to train
    model: str = option("smollm2-135m", "model: the embedded 'smollm2-135m', an HF hub id, a local HF directory "
                        "or a .gguf file", aliases=("model_name_or_path",))
    data: Optional[str] = option(None, "training records: JSONL/JSON/Parquet/CSV file or datasets directory "
                                 "(see 'Train on your own data' in the README)", aliases=("train", "dataset"))
    eval_data: Optional[str] = option(None, "optional held-out records; their loss is reported at each eval step")
    objective: str = option("deft", "objective spec, e.g. deft, nll, power:alpha=0.5, eaft:k=20 "
                            "(see 'deft objectives')")
    output_dir: str = option("runs/train", "output folder: config.yaml, metrics.jsonl, checkpoints, final/",
                             aliases=("out",))
    model_key: Optional[str] = option(None, "the reference's model key (qwen-2.5-1.5b, llama-3.1-8b, deepseek-math-7b, "
                                      "...) of --model: picks the paper template's family and preset when the "
                                      "model path does not name it (a local checkpoint)",
                                      check=_check_model_key)
    protocol: str = option("deft", "deft (our defaults) or paper (the reference code's micro-batch loss "
                           "normalisation, literal prompt template and AdamW beta2 0.95)", choices=("deft", "paper"))
    # schedule
    max_steps: int = option(-1, "optimizer steps to run; -1 = run --epochs", check="positive_or_minus_one")
    epochs: float = option(1.0, "passes over the training data (used when max_steps is -1)",
                           aliases=("num_train_epochs",), check="positive")
    batch_size: int = option(4, "examples per micro-batch per process",
                             aliases=("per_device_train_batch_size",), check="positive")
    grad_accum: int = option(1, "micro-batches per optimizer step", aliases=("gradient_accumulation_steps",),
                             check="positive")
    optim: str = option("adamw", "optimizer: adamw (AdamW) or sgd (plain SGD, no momentum)",
                        choices=("adamw", "sgd"))
    lr: float = option(5e-5, "peak learning rate", aliases=("learning_rate",), check="positive")
    lr_scheduler: str = option("cosine", "learning-rate schedule", aliases=("lr_scheduler_type",),
                               choices=("cosine", "linear", "constant", "constant_with_warmup"))
    warmup_ratio: float = option(0.1, "fraction of the optimizer steps spent warming up the learning rate",
                                 check="ratio")
    weight_decay: float = option(0.0, "AdamW weight decay", check="non_negative")
    adam_beta1: float = option(0.9, "AdamW beta1 (decay of the gradient's running mean)", check="ratio")
    adam_beta2: float = option(0.999, "AdamW beta2 (decay of the squared gradient's running mean); "
                               "protocol paper: 0.95", check="ratio")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 disables)", check="non_negative")
    loss_normalization: str = option("tokens", "tokens: divide the summed loss by the loss tokens of the whole "
                                     "optimizer step (all micro-batches and processes); micro_batch: the reference "
                                     "code's mean per micro-batch, averaged over micro-batches and processes",
                                     choices=("tokens", "micro_batch"))
    seed: int = option(42, "random seed (data order, initialisation of LoRA)")
    preset: Optional[str] = option(None, "'paper': the paper's learning rate for known models (2e-5 for "
                                   "Llama-3.1-8B)", choices=(None, "paper"))
    # data
    max_length: int = option(1024, "maximum tokens per example (or per packed row)", aliases=("max_seq_length",),
                             check="positive")
    truncation: str = option("left", "over-long examples: left (drop prompt tokens from the left), right, drop",
                             choices=("left", "right", "drop"))
    template: str = option("auto", "prompt format: auto (the tokenizer's chat template, else plain), chat, paper "
                           "(the reference's literal prompts; the family from --model or --model-key, or "
                           "paper:qwen|llama|deepseek), or a plain template name")
    map: list[str] = option([], "column mapping for your records, KEY=COLUMN[,KEY=COLUMN...], e.g. "
                            "prompt=question,response=answer")
    all_turns: bool = option(False, "train on every assistant turn of multi-turn records, not only the last")
    packing: bool = option(False, "pack several examples per row (position ids restart per example)")
    skip_invalid: bool = option(False, "drop invalid records (reported as a count) instead of stopping")
    # model
    dtype: str = option("float32", "training dtype of the weights", choices=("float32", "bfloat16", "float16"))
    fused: bool = option(True, "compute the loss with the fused chunked engine (never holds [tokens, vocab] logits)")
    chunk_size: Optional[int] = option(None, "rows per chunk of the fused loss (default: chosen from tokens, "
                                       "hidden size, vocab)", check="positive")
    gradient_checkpointing: bool = option(False, "recompute activations in backward to save memory")
    lora_rank: int = option(0, "LoRA rank; 0 = full fine-tuning", aliases=("lora_r",), check="non_negative")
    lora_alpha: int = option(16, "LoRA alpha", check="positive")
    lora_dropout: float = option(0.0, "LoRA dropout", check="ratio")
    target_modules: list[str] = option(["all-linear"], "LoRA target modules: all-linear or a comma-separated list "
                                       "(q_proj,v_proj)", aliases=("lora_target_modules",))
    reference_model: Optional[str] = option(None, "reference model for sft_kl/asft (default: the initial model; "
                                            "with LoRA the adapter is disabled)")
    teacher_model: Optional[str] = option(None, "teacher model for kd/kd_hybrid/target_sft (same vocabulary)")
    old_policy_refresh: int = option(OLD_POLICY_REFRESH, "psft: optimizer steps between refreshes of the old-policy "
                                     "snapshot",
                                     check="positive")
    trust_remote_code: bool = option(False, "allow model repositories to run their own code (off unless you "
                                     "trust it)")
    # output
    save_steps: int = option(0, "save a checkpoint every N optimizer steps (0: only at the end)",
                             check="non_negative")
    save_total_limit: int = option(2, "keep at most this many checkpoints", check="positive")
    eval_steps: int = option(0, "evaluate --eval-data every N steps (0: only at the end)", check="non_negative")
    logging_steps: int = option(1, "progress-bar refresh period in steps (metrics.jsonl gets every step)",
                                check="positive")
    report_to: list[str] = option([], "experiment trackers, comma-separated: tensorboard, wandb, mlflow "
                                  "(default: none)", check=_check_report_to)
    resume: bool = option(False, "continue from the latest complete checkpoint in the output folder")
    resume_from_checkpoint: Optional[str] = option(None, "continue from this checkpoint folder (implies --resume)")
    overwrite: bool = option(False, "delete the output folder's previous run before starting",
                             aliases=("overwrite_output_dir",))
    num_workers: int = option(0, "data-loader worker processes", aliases=("dataloader_num_workers",),
                              check="non_negative")
    progress: bool = option(True, "show a progress bar")

    def resolved_template(self) -> str:
        """The template the data is tokenised with: ``paper`` (or ``paper-sft``) becomes
        ``paper:<family>``, the family read from ``model_key``, else from the model's name
        (:func:`deft.data.paper.paper_family`); other names unchanged. Raises ``ValueError`` (one
        line, asking for ``--model-key``) when neither names a family."""
        if self.template not in ("paper", "paper-sft"):
            return self.template
        from ..data.paper import PAPER_MODELS, paper_family

        family = paper_family(self.model_key) or paper_family(self.model)
        if family is None:
            raise ValueError(f"--template {self.template}: the reference's prompts depend on the model family and "
                             f"--model {self.model!r} names none; pass --model-key ({', '.join(PAPER_MODELS)}) "
                             f"or --template {self.template}:qwen|llama|deepseek")
        return f"{self.template}:{family}"

    def validate(self) -> "TrainConfig":
        """Cross-field rules, checked before anything loads: options the objective ignores are an
        error, trackers must be installed, ``protocol: paper`` fills the reference's settings the
        user did not set, ``resume_from_checkpoint`` implies ``resume``."""
        cfg = self
        explicit = explicit_fields(self)
        if cfg.protocol == "paper":
            values = {}
            if "loss_normalization" not in explicit:
                values["loss_normalization"] = "micro_batch"
            if "template" not in explicit:
                values["template"] = "paper"
            if "adam_beta2" not in explicit:
                values["adam_beta2"] = 0.95  # the reference trainer's AdamW betas are (0.9, 0.95)
            cfg = dataclasses.replace(cfg, **values)
        if cfg.resume_from_checkpoint and not cfg.resume:
            cfg = dataclasses.replace(cfg, resume=True)
        if cfg.resume and cfg.overwrite:
            raise ConfigError("'resume' and 'overwrite' contradict each other: pass one of them")
        _check_trackers(cfg.report_to)
        _check_objective_inputs(cfg)
        return apply_preset(cfg, explicit)


def _check_trackers(report_to: list[str]) -> None:
    for name in report_to:
        if name in REPORTERS:
            module, extra = REPORTERS[name]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"'report_to': {name} is not installed; run: pip install 'deft-sft[{extra}]'")


def _check_objective_inputs(cfg: TrainConfig) -> None:
    from ..objectives import parse_objective

    try:
        objective = parse_objective(cfg.objective)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"'objective': {str(err).strip(chr(39))}") from None
    from ..objectives import objective_inputs
    from ..objectives.needs import NEEDS
    from ..objectives.registry import REGISTRY

    needs = {str(getattr(n, "name", n)) for n in objective.needs}
    for need in NEEDS.values():  # an option that supplies an input the objective does not read
        if need.option and getattr(cfg, need.option, None) and need.name not in needs:
            users = sorted(name for name, d in REGISTRY.items() if need.name in d.needs)
            raise ConfigError(f"'{need.option}' is set but objective '{objective.spec}' uses no "
                              f"{need.option.replace('_model', ' model')}; drop it or pick {_either(users)}")
    for need in objective_inputs(objective):  # an input with an option and no default must be given
        if need.option and not need.default and not getattr(cfg, need.option, None):
            raise ConfigError(f"objective '{objective.spec}' needs --{need.option.replace('_', '-')}: {need.what}")


def _either(names: list) -> str:
    return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else (names[0] if names else "another")


PAPER_PRESETS = {  # model-name pattern -> overrides (paper Appendix E.3)
    r"llama-?3\.1-?8b": {"lr": 2e-5},
    r".*": {"lr": 5e-5, "lr_scheduler": "cosine", "warmup_ratio": 0.1, "epochs": 1.0},
}


def apply_preset(cfg: TrainConfig, explicit=frozenset()) -> TrainConfig:
    """Apply the paper preset for ``cfg.model`` to the fields the user did not set explicitly."""
    if cfg.preset != "paper":
        return cfg
    values = {}
    from ..data.paper import PAPER_MODELS

    name = PAPER_MODELS.get((cfg.model_key or "").lower(), cfg.model).lower()
    for pattern, preset in PAPER_PRESETS.items():
        if re.search(pattern, name):
            for key, value in preset.items():
                if key not in explicit and key not in values:
                    values[key] = value
    return dataclasses.replace(cfg, **values)


def apply_overrides(cfg: TrainConfig, overrides: dict, where: str = "command line") -> TrainConfig:
    """Return ``cfg`` with ``overrides`` (option name -> raw value) applied and checked."""
    return _config.apply_overrides(cfg, overrides, where)


def load_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> TrainConfig:
    """Load a YAML config (``yaml.safe_load``), then apply ``overrides``, the protocol and the preset;
    every value is range-checked and the objective's inputs are validated before anything loads."""
    return _config.load_config(TrainConfig, path, overrides)


def field_help() -> dict[str, str]:
    """Help text of every field."""
    return _config.field_help(TrainConfig)
