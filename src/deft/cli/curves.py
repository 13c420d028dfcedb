"""``deft curves``: the gate s(p) and learning signal W(p) of every objective (paper Eq. 7)."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "curves",
        description="Write curves.png and curves.csv with the gate s(p) and the learning signal "
                    "W(p) = s(p)(1-p) of each objective, computed by the objectives' own code on synthetic rows.",
    )
    p.add_argument("--objectives", default=None,
                   help="comma-separated objective specs (default: every objective that needs no reference, "
                        "teacher or old policy)")
    p.add_argument("--vocab-size", type=int, default=1024, help="vocabulary size of the synthetic rows (default 1024)")
    p.add_argument("--out", default="runs/curves", help="output directory (default runs/curves)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.curves import all_curves, plot_curves, write_curves_csv

    specs = [s.strip() for s in args.objectives.split(",")] if args.objectives else None
    if args.vocab_size < 2:
        raise ValueError("--vocab-size must be at least 2")
    curves = all_curves(specs, vocab_size=args.vocab_size)
    out = Path(args.out)
    write_curves_csv(curves, out / "curves.csv")
    plot_curves(curves, out / "curves.png")
    print(f"wrote {out / 'curves.png'} and {out / 'curves.csv'} ({len(curves)} curves)")
    return 0
