"""``deft objectives``: list every objective, or describe one spec.

The options are :class:`ObjectivesConfig` (kept here: the objectives package loads torch, and
``deft objectives --help`` must not).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

from ..config import add_config_flags, config_from_args, option


def _check_spec(spec: str) -> Optional[str]:
    """None when ``spec`` parses (:func:`deft.objectives.parse_objective`), else why not."""
    from ..objectives import parse_objective

    try:
        parse_objective(spec)
    except (KeyError, ValueError) as err:
        return str(err.args[0] if err.args else err)
    return None


@dataclass
class ObjectivesConfig:
    """Every option of ``deft objectives``."""

    COMMAND = "objectives"
    spec: Optional[str] = option(None, "an objective spec to check and describe, e.g. power:alpha=0.3 or "
                                 "nll[p>=0.1] (default: list all)", flag=False, check=_check_spec)


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "objectives",
        description="List every objective with its one-line description, or check and describe one spec "
                    "string such as 'power:alpha=0.3' or 'nll[p>=0.1]'.",
    )
    p.add_argument("spec", nargs="?", default=argparse.SUPPRESS,
                   help=ObjectivesConfig.__dataclass_fields__["spec"].metadata["help"])
    add_config_flags(p, ObjectivesConfig, config_file=False)
    p.set_defaults(func=run)


def run(args) -> int:
    """Print the description of ``spec``, or the list of objectives and the mask syntax."""
    from ..objectives import MASKS_HELP, REGISTRY, describe_mask, list_objectives, parse_objective

    cfg = config_from_args(ObjectivesConfig, args)
    if cfg.spec:
        obj = parse_objective(cfg.spec)
        d = REGISTRY[obj.name]
        print(f"{obj.spec}: {d.summary}")
        print(f"  kind: {d.kind}" + (f"; needs: {', '.join(sorted(d.needs))}" if d.needs else ""))
        for key, value in obj.values:
            print(f"  {key} = {value}  ({d.params[key].help})")
        if describe_mask(obj):
            print(f"  {describe_mask(obj)}")
        return 0
    rows = list_objectives()
    width = max(map(len, rows))
    for name, line in rows.items():
        print(f"{name:<{width}}  {line}")
    print()
    print(MASKS_HELP)
    return 0
