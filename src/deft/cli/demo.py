"""``deft demo``: the main job of ``make demo`` (see :mod:`deft.recipes.demo`): probe the embedded
model on FigFont puzzles, fine-tune several objectives, measure learning and forgetting, report."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import add_config_flags, config_from_args, option


@dataclass
class DemoConfig:
    """Every option of ``deft demo``."""

    COMMAND = "demo"
    out: str = option("runs/demo", "output folder", aliases=("output_dir",))
    model: str = option("smollm2-135m", "model to fine-tune (default: the embedded smollm2-135m)")
    objectives: str = option("nll,p,deft", "comma-separated objective specs")
    steps: int = option(8, "optimizer steps per objective", aliases=("max_steps",), check="positive")
    batch_size: int = option(6, "puzzles per step", check="positive")
    lr: float = option(2e-4, "peak learning rate", check="positive")
    n: int = option(16, "held-out puzzles answered greedily for exact match / Jaro-Winkler (0 skips)",
                    aliases=("eval_size",), check="non_negative")
    heldout_size: int = option(24, "held-out puzzles for the teacher-forced held-out NLL", check="positive")
    seed: int = option(0, "seed of data, training and evaluation")


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "demo",
        description="Probe the embedded SmolLM2-135M-Instruct on FigFont puzzles (regime verdict), fine-tune it with "
                    "each objective on the same data, seed and hyper-parameters, measure held-out NLL (learning), "
                    "drift KL and retained NLL (forgetting) and greedy exact match / Jaro-Winkler, and write a "
                    "results table, training-curve and gate plots and an HTML report. Runs offline on a CPU.",
    )
    add_config_flags(p, DemoConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..recipes.demo import demo

    cfg = config_from_args(DemoConfig, args)
    demo(out=cfg.out, model=cfg.model, objectives=[s.strip() for s in cfg.objectives.split(",") if s.strip()],
         steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, eval_size=cfg.n, heldout_size=cfg.heldout_size,
         seed=cfg.seed)
    return 0
