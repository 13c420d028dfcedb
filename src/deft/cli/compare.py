"""``deft compare``: train one run per objective (and seed), evaluate each and the base model,
print a paper-style table with intervals."""

from __future__ import annotations

import argparse

from ..config import add_config_flags, config_from_args, parse_pairs
from ..recipes.compare import CompareConfig


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "compare",
        description="Train one run per objective (and seed) with the same data and hyper-parameters, evaluate "
                    "each run and the base model, measure learning (held-out NLL) and forgetting (drift KL, "
                    "retained NLL), and write results.md / results.csv (methods as rows, base first; every cell "
                    "the mean over seeds with a 95% interval; best in bold and second underlined only where the "
                    "difference is outside the noise) with plots. Each run and evaluation folder records the hash "
                    "of its settings and inputs: unchanged ones are reused, changed ones redone. --grid FILE runs "
                    "models x datasets from a YAML file.",
        epilog="Training options are passed as key=value (any 'deft train' option, e.g. max_steps=16 lr=5e-5).",
    )
    add_config_flags(p, CompareConfig)
    p.add_argument("--n-gpus", dest="n_gpus", default=argparse.SUPPRESS, metavar="N",
                   help="paper protocol: processes sharing the global batch of 256 (default 1)")
    p.add_argument("--medical-eval", dest="medical_eval", default=argparse.SUPPRESS, metavar="FILE",
                   help="paper protocol: the m1 medical evaluation file")
    p.add_argument("--math-eval-dir", dest="math_eval_dir", default=argparse.SUPPRESS, metavar="DIR",
                   help="paper protocol: folder of <benchmark>/test.jsonl for the math benchmarks")
    p.add_argument("--data-input", dest="data_input", default=argparse.SUPPRESS, metavar="SOURCE",
                   help="paper protocol: math/medical source rows (file or hub id)")
    p.add_argument("train_options", nargs="*", metavar="key=value", default=[],
                   help="'deft train' options for every run")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..recipes.compare import compare
    from ..recipes.grid import run_grid

    if getattr(args, "protocol", None) == "paper":
        print(_paper_cell(args))
        return 0
    cfg = config_from_args(CompareConfig, args)
    train_options = parse_pairs(args.train_options)
    if cfg.grid:
        print(run_grid(cfg.grid))
        return 0
    md = compare(cfg, train_options, log=lambda msg: print(msg, flush=True))
    print(md)
    if not cfg.dry_run:
        out = Path(cfg.out)
        print(f"wrote {out / 'results.md'} and {out / 'results.csv'}; a report page with this table and the "
              f"training curves: 'deft plot --results {out} --runs {out / 'runs'}/<objective>'")
    return 0


def _paper_cell(args) -> str:
    """``--protocol paper``: one cell of the paper's Tables 1-3 (its own options, YAML or flags)."""
    from dataclasses import fields

    from ..recipes.paper_protocol import PaperCellConfig
    from ..recipes.paper_run import paper_cell_main

    names = {f.name for f in fields(PaperCellConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and k not in ("train", "eval")}
    if args.train_options:
        overrides["train"] = list(args.train_options)
    return paper_cell_main(getattr(args, "config", None), overrides, log=lambda msg: print(msg, flush=True))
