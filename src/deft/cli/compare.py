"""``deft compare``: train one run per objective (and seed), evaluate each and the base model,
print a paper-style table with intervals."""

from __future__ import annotations

from ..config import add_config_flags, config_from_args, parse_pairs
from ..recipes.compare import CompareConfig


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="train + evaluate several objectives on one model and data; paper-style table",
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
    p.add_argument("train_options", nargs="*", metavar="key=value", default=[],
                   help="'deft train' options for every run")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..recipes.compare import compare, run_grid

    cfg = config_from_args(CompareConfig, args)
    train_options = parse_pairs(args.train_options)
    if cfg.protocol == "paper":
        from ..recipes.paper import paper_compare

        print(paper_compare(cfg, train_options))
        return 0
    if cfg.grid:
        print(run_grid(cfg.grid))
        return 0
    md = compare(cfg, train_options, log=lambda msg: print(msg, flush=True))
    print(md)
    if not cfg.dry_run:
        out = Path(cfg.out)
        print(f"wrote {out / 'results.md'} and {out / 'results.csv'}; plot the runs with "
              f"'deft plot --runs {out / 'runs'}/<objective>'")
    return 0
