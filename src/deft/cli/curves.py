"""``deft curves``: the gate s(p) and learning signal W(p) of every objective (paper Eq. 7).

Parses :class:`deft.analysis.curves.CurvesConfig` and calls :func:`deft.analysis.curves.write_curves`.
"""

from __future__ import annotations

from ..analysis.curves import CurvesConfig
from ..config import add_config_flags, config_from_args


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "curves",
        description="Write curves.png and curves.csv with the gate s(p) and the learning signal "
                    "W(p) = s(p)(1-p) of each objective, computed by the objectives' own code on synthetic rows.",
    )
    add_config_flags(p, CurvesConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    """Parse :class:`CurvesConfig` and write the curves."""
    from ..analysis.curves import write_curves

    write_curves(config_from_args(CurvesConfig, args))
    return 0
