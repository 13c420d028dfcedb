"""``deft plot``: the paper's figures from saved runs and probes, as PNGs and an HTML page.

Parses :class:`deft.analysis.report.PlotConfig` and calls :func:`deft.analysis.report.plot_report`.
"""

from __future__ import annotations

from ..analysis.report import PlotConfig
from ..config import add_config_flags, config_from_args


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
    add_config_flags(p, PlotConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    """Parse :class:`PlotConfig` and write the figures and index.html."""
    from ..analysis.report import plot_report

    plot_report(config_from_args(PlotConfig, args))
    return 0
