"""``deft train``: fine-tune a causal LM with a token-level objective."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..train.config import TrainConfig, field_help, load_config


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune a causal LM with any objective (fused loss, LoRA, accelerate)",
        description="Fine-tune a causal LM on records from 'deft data' with a token-level objective. Options come "
                    "from --config FILE (YAML), then key=value pairs, then --flags (later wins). Multi-GPU / "
                    "multi-node: 'accelerate launch -m deft.cli.main train ...' (see examples/accelerate/).",
        epilog="Outputs in --output-dir: config.yaml, metrics.jsonl (one line per optimizer step), checkpoint-N/, "
               "final/ (HF model directory).",
    )
    p.add_argument("--config", help="YAML file of options (keys are the option names below, with underscores)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="option overrides, e.g. lr=2e-5 packing=true")
    helps = field_help()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=f"{helps[f.name]} (default {default})")
        else:
            p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar=f.name.upper(),
                           help=f"{helps[f.name]} (default {default})")
    p.set_defaults(func=run)


def parse_pairs(pairs) -> dict:
    out = {}
    for item in pairs:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def resolve(args) -> TrainConfig:
    overrides = parse_pairs(args.overrides)
    names = {f.name for f in fields(TrainConfig)}
    overrides.update({k: v for k, v in vars(args).items() if k in names})
    return load_config(args.config, overrides)


def run(args) -> int:
    from ..train.trainer import train

    cfg = resolve(args)
    summary = train(cfg)
    if summary.get("final"):
        print(f"done: {summary['steps']} steps, train loss {summary['train_loss']:.4f}; model in {summary['final']}")
    return 0
