"""``deft train``: fine-tune a causal LM with a token-level objective."""

from __future__ import annotations

from ..config import add_config_flags, config_from_args
from ..train.config import TrainConfig


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "train",
        description="Fine-tune a causal LM on records with a token-level objective. Options come from --config "
                    "FILE (YAML), then key=value pairs, then --flags (later wins); the HF TrainingArguments / TRL "
                    "names (learning_rate, num_train_epochs, per_device_train_batch_size, ...) are accepted too. "
                    "Multi-GPU / multi-node: 'accelerate launch -m deft.cli.main train ...' "
                    "(see examples/accelerate/).",
        epilog="Outputs in --out: config.yaml, metrics.jsonl (one line per optimizer step), checkpoint-N/, "
               "final/ (HF model directory), summary.json, tensorboard/ (with --report-to tensorboard). One run per "
               "folder: a used folder needs --resume (continue) or --overwrite (start again).",
    )
    add_config_flags(p, TrainConfig, pairs=True)
    p.set_defaults(func=run)


def resolve(args) -> TrainConfig:
    """The resolved, validated config of a parsed ``deft train`` command line."""
    return config_from_args(TrainConfig, args)


def run(args) -> int:
    cfg = resolve(args)
    from ..train.run import is_main_process, next_steps, train

    summary = train(cfg)
    if not is_main_process():  # every process runs the job; one speaks
        return 0
    if summary.get("final") and not summary.get("already_finished"):
        loss = summary.get("train_loss")
        print(f"done: {summary['steps']} steps, train loss {'n/a' if loss is None else f'{loss:.4f}'}; "
              f"model in {summary['final']}")
    for line in next_steps(summary):
        print(line)
    return 0
