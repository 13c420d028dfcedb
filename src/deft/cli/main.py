"""``deft`` entry point. Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)`` which registers the verb and sets ``func`` to its runner.

Subcommands load lazily: ``deft --help`` imports none of them, and ``deft train ...`` imports only
:mod:`deft.cli.train`, so help and argument errors come back without importing torch. An unknown
flag gets the closest known one as a suggestion.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from .. import __version__

# verb -> one-line summary shown by ``deft --help`` (each module's add_parser() has the full help)
SUBCOMMANDS = {
    "data": "build, check and measure training/evaluation record files",
    "train": "fine-tune a causal LM with any objective (fused loss, LoRA, accelerate)",
    "eval": "evaluate a model: k samples per problem, Average@k / Pass@k / Maj@k",
    "probe": "one forward pass, no training: mean p, DEFT focus, regime verdict",
    "compare": "train + evaluate several objectives on one model and data; paper-style table",
    "plot": "paper figures from runs and probes, with an HTML page",
    "objectives": "list the token-level objectives and their parameters",
    "curves": "plot the gate s(p) and learning signal W(p) of objectives (paper Eq. 7)",
    "demo": "the main job: probe, fine-tune and compare objectives on the embedded model",
}


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def build_parser(verbs=None) -> argparse.ArgumentParser:
    """The ``deft`` parser. ``verbs``: the subcommands whose modules are imported to register their
    full options (default: all); the others appear in ``--help`` with their summary only."""
    parser = argparse.ArgumentParser(
        prog="deft",
        description="Supervised fine-tuning with token-level objectives (NLL, DEFT, Cayley, DFT, EAFT, KD, ...).",
        epilog="Run 'deft <command> --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"deft {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for verb, summary in SUBCOMMANDS.items():
        if verbs is None or verb in verbs:
            importlib.import_module(f"deft.cli.{verb}").add_parser(subparsers)
        else:
            subparsers.add_parser(verb, help=summary, add_help=False)
    return parser


def _verb(argv) -> str | None:
    for arg in argv:
        if arg in SUBCOMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def _suggest(parser: argparse.ArgumentParser, verb: str | None, unknown: list[str]) -> str:
    target = parser
    if verb:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        target = sub.choices[verb]
    known = [s for s in target._option_string_actions if s.startswith("--")]
    parts = []
    for arg in unknown:
        flag = arg.split("=", 1)[0]
        if flag.startswith("-"):
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            parts.append(f"'{flag}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        else:
            parts.append(f"'{arg}'")
    return f"unrecognized argument{'s' if len(parts) > 1 else ''} {', '.join(parts)}; see 'deft {verb or ''} --help'"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = _verb(argv)
    parser = build_parser([verb] if verb else [])
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"deft{' ' + verb if verb else ''}: error: {_suggest(parser, verb, unknown)}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, OSError) as err:
        print(f"deft {args.command}: error{_process_tag()}: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deft {args.command}: interrupted", file=sys.stderr)
        return 130


def _process_tag() -> str:
    """`` (process R of N)`` in a multi-process launch (every process reports its error), else empty."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f" (process {os.environ.get('RANK', '0')} of {world})" if world > 1 else ""


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
