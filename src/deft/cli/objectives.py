"""``deft objectives``: list every objective, or describe one spec."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "objectives",
        description="List every objective with its one-line description, or check and describe one spec "
                    "string such as 'power:alpha=0.3' or 'nll[p>=0.1]'.",
    )
    p.add_argument("spec", nargs="?", help="an objective spec to check and describe (default: list all)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..objectives import MASKS_HELP, REGISTRY, describe_mask, list_objectives, parse_objective

    if args.spec:
        obj = parse_objective(args.spec)
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
