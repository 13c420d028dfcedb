"""``deft plot``: the paper's figures from saved runs and probes, as PNGs and an HTML page."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "plot",
        description="Draw the figures the given inputs allow and a self-contained index.html page (figures inlined, "
                    "so it can be mailed) that leads with the results table of --results, then shows: focus and mean p "
                    "over training (Figure 5) from --runs; the gradient landscape (Figure 2) and the token-probability "
                    "distribution (Figures 3, 4, 6) from --probes; token learning/forgetting (Figure 1) from "
                    "--before/--after; and always the gate s(p) and learning signal W(p) of every objective.",
        epilog="Inputs may be labelled: --probes base=runs/probe-base nll=runs/probe-nll. Probes come from "
               "'deft probe --out DIR' (DIR/token_stats.npz); probe trained models on the same --data, --n and --seed "
               "so that their tokens match.",
    )
    p.add_argument("--results", default=None, metavar="DIR",
                   help="a 'deft compare' or 'deft demo' --out folder (or its table.json): the page leads with its "
                        "results table, the cells and intervals the terminal table shows, best per column marked")
    p.add_argument("--runs", action="append", default=[], metavar="DIR[,DIR...]",
                   help="'deft train' output directories with metrics.jsonl (comma-separated or repeated; "
                        "NAME=DIR to label a run)")
    p.add_argument("--probes", nargs="+", default=[], metavar="PROBE",
                   help="'deft probe --out' directories, or their token_stats.npz/.pt files (NAME=PATH to label one)")
    p.add_argument("--before", default=None, metavar="PROBE",
                   help="probe of the earlier checkpoint for the learning/forgetting figure (with --after)")
    p.add_argument("--after", default=None, metavar="PROBE",
                   help="probe of the later checkpoint on the same records (with --before)")
    p.add_argument("--objectives", default="nll,p,eaft,cayley,deft",
                   help="comma-separated objectives of the gradient-landscape panels (default nll,p,eaft,cayley,deft)")
    p.add_argument("--curve-objectives", default=None,
                   help="comma-separated objectives of the gate-curve figure (default: every objective that needs "
                        "no reference, teacher or old policy)")
    p.add_argument("--threshold", type=float, default=0.01,
                   help="|change in p| above which a token counts as learned or forgotten (default 0.01)")
    p.add_argument("--max-points", type=int, default=20000,
                   help="tokens drawn per scatter panel, sampled with a fixed seed (default 20000)")
    p.add_argument("--out", default="runs/plots",
                   help="output directory for the PNGs and index.html (default runs/plots)")
    p.set_defaults(func=run)


def _split(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def run(args) -> int:
    from ..analysis.report import build_report, parse_labelled
    from ..analysis.tables import read_tables

    if args.threshold < 0:
        raise ValueError("--threshold must be >= 0")
    if args.max_points < 1:
        raise ValueError("--max-points must be at least 1")
    runs = parse_labelled([item for group in args.runs for item in _split(group)])
    probes = parse_labelled(args.probes)
    table = read_tables(args.results) if args.results else {"results": None, "title": "", "reference": "nll"}
    result = build_report(args.out, runs=runs, probes=probes, before=args.before, after=args.after,
                          objectives=_split(args.objectives), curve_objectives=_split(args.curve_objectives) or None,
                          threshold=args.threshold, max_points=args.max_points, results=table["results"],
                          results_title=table["title"], reference=table["reference"])
    for note in result["notes"]:
        print(f"note: {note}")
    names = ", ".join(name for name, _ in result["figures"])
    led = " (led by the results table)" if table["results"] else ""
    print(f"wrote {names} and index.html{led} to {args.out}")
    if result["learning"]:
        s = result["learning"]
        print(f"learning: {s['learned']:.1%} learned, {s['forgotten']:.1%} forgotten "
              f"(high confidence: {s['learned_high']:.1%} / {s['forgotten_high']:.1%})")
    return 0
