"""``deft demo``: the main job of ``make demo`` (see :mod:`deft.recipes.demo`): probe the embedded
model on FigFont puzzles, fine-tune several objectives, measure learning and forgetting, report."""

from __future__ import annotations

from ..config import add_config_flags, config_from_args
from ..recipes.demo import DemoConfig

__all__ = ["DemoConfig", "add_parser", "run"]  # DemoConfig lives in deft.recipes.demo


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
    """Parse :class:`DemoConfig` and run :func:`deft.recipes.demo.demo`."""
    from ..recipes.demo import demo

    cfg = config_from_args(DemoConfig, args)
    demo(out=cfg.out, model=cfg.model, objectives=cfg.objectives,
         steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, eval_size=cfg.n, heldout_size=cfg.heldout_size,
         seed=cfg.seed)
    return 0
