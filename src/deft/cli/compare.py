"""``deft compare``: train one run per objective, evaluate each and the base model, print a
paper-style table (best in bold, second underlined)."""

from __future__ import annotations

from pathlib import Path

import yaml


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="train + evaluate several objectives on one model and data; paper-style table",
        description="Train one run per objective with the same data, seed and hyper-parameters, evaluate each run "
                    "and the base model, and write results.md / results.csv (methods as rows, benchmarks as "
                    "columns, an average column, best in bold, second underlined) with plots. Finished runs and "
                    "evaluations are not redone. --grid FILE runs models x datasets from a YAML file.",
        epilog="Training options are passed as key=value (any 'deft train' option, e.g. max_steps=16 lr=5e-5).",
    )
    p.add_argument("--grid", help="YAML grid: out, models, datasets (name: file), objectives, benchmarks, "
                                  "train (options), eval (options)")
    p.add_argument("--model", default="smollm2-135m", help="model to fine-tune (default: the embedded smollm2-135m)")
    p.add_argument("--train", dest="train_data", help="training records (from 'deft data')")
    p.add_argument("--objectives", default="nll,p,cayley,deft,eaft",
                   help="comma-separated objective specs (default nll,p,cayley,deft,eaft)")
    p.add_argument("--benchmark", action="append", default=None,
                   help="benchmark(s) as in 'deft eval' (comma-separated or repeated), e.g. figfont, math500")
    p.add_argument("--out", default="runs/compare", help="experiment directory (default runs/compare)")
    p.add_argument("--eval-size", type=int, default=None, help="generated problems for figfont / rg:<task> benchmarks")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many problems per benchmark")
    p.add_argument("--k", type=int, default=1, help="samples per problem (Average@k; default 1)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: 0 for k=1, else 1)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation budget (default: per benchmark)")
    p.add_argument("--data-dir", default=None, help="directory of <benchmark>/test.jsonl files for math benchmarks")
    p.add_argument("--no-base", action="store_true", help="do not evaluate the base model")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="training options for every run")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..recipes.compare import compare, run_grid
    from ..config import parse_pairs

    if args.grid:
        path = Path(args.grid)
        if not path.is_file():
            raise FileNotFoundError(f"{args.grid}: grid file not found")
        try:
            grid = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{args.grid}: not valid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(grid, dict):
            raise ValueError(f"{args.grid}: a grid file must be a mapping")
        print(run_grid(grid, where=str(path)))
        return 0
    if not args.train_data:
        raise ValueError("pass --train FILE (training records) or --grid FILE")
    if not args.benchmark:
        raise ValueError("pass --benchmark (e.g. figfont)")
    benchmarks = [b.strip() for item in args.benchmark for b in item.split(",") if b.strip()]
    eval_options = {"k": args.k}
    for key in ("temperature", "max_new_tokens", "limit", "data_dir"):
        if getattr(args, key) is not None:
            eval_options[key] = getattr(args, key)
    if args.eval_size is not None:
        eval_options["size"] = args.eval_size
    md = compare(model=args.model, train_data=args.train_data,
                 objectives=[s.strip() for s in args.objectives.split(",") if s.strip()],
                 benchmarks=benchmarks, out_dir=args.out, train_options=parse_pairs(args.overrides),
                 eval_options=eval_options, evaluate_base=not args.no_base)
    print(md)
    print(f"wrote {Path(args.out) / 'results.md'} and {Path(args.out) / 'results.csv'}")
    return 0
