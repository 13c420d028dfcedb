"""``deft`` entry point. Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)`` which registers the verb and sets ``func`` to its runner. Every verb is
declared once here (:func:`register_verb`: name, one-line summary, module); ``deft --help`` lists
the summaries and each module's parser takes its summary from the declaration (:func:`add_verb_parser`).

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
from collections.abc import Mapping
from dataclasses import dataclass

from .. import __version__

@dataclass(frozen=True)
class Verb:
    """One ``deft`` subcommand: its ``name``, the one-line ``summary`` shown by ``deft --help`` (written
    here only) and the ``module`` whose ``add_parser(subparsers)`` registers its options (imported
    only when the verb is used)."""

    name: str
    summary: str
    module: str


VERBS: dict[str, Verb] = {}


def register_verb(name: str, summary: str, module: str | None = None) -> Verb:
    """Declare a subcommand; ``module`` defaults to ``deft.cli.<name>``. Its ``add_parser`` should
    create the parser with :func:`add_verb_parser` so that the summary is written once."""
    if name in VERBS:
        raise ValueError(f"verb '{name}' is already registered")
    VERBS[name] = verb = Verb(name, summary, module or f"deft.cli.{name}")
    return verb


def unregister_verb(name: str) -> None:
    """Remove a subcommand declared with :func:`register_verb`."""
    VERBS.pop(name, None)


def add_verb_parser(subparsers, name: str, **kwargs) -> argparse.ArgumentParser:
    """``subparsers.add_parser(name, help=<the declared summary>, **kwargs)``: a verb module's parser
    with the one-line summary of its :class:`Verb` declaration."""
    return subparsers.add_parser(name, help=VERBS[name].summary, **kwargs)


class _Summaries(Mapping):
    """``{verb: summary}``, a live read-only view of :data:`VERBS`."""

    def __getitem__(self, name: str) -> str:
        return VERBS[name].summary

    def __iter__(self):
        return iter(VERBS)

    def __len__(self) -> int:
        return len(VERBS)


SUBCOMMANDS: Mapping[str, str] = _Summaries()

register_verb("data", "build, check and measure training/evaluation record files")
register_verb("train", "fine-tune a causal LM with any objective (fused loss, LoRA, accelerate)")
register_verb("eval", "evaluate a model: k samples per problem, Average@k / Pass@k / Maj@k")
register_verb("probe", "one forward pass, no training: mean p, DEFT focus, confident conflicts, regime verdict")
register_verb("compare", "train + evaluate several objectives on one model and data; paper-style table")
register_verb("plot", "paper figures from runs and probes: training curves, gradient landscape, p distribution, "
              "learning/forgetting, gate curves (PNG + index.html)")
register_verb("objectives", "list the token-level objectives and their parameters")
register_verb("curves", "plot the gate s(p) and learning signal W(p) of objectives (paper Eq. 7)")
register_verb("demo", "the main job: probe, fine-tune NLL / -p / DEFT on FigFont, measure learning and forgetting")


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
    for verb in list(VERBS.values()):
        if verbs is None or verb.name in verbs:
            importlib.import_module(verb.module).add_parser(subparsers)
        else:
            subparsers.add_parser(verb.name, help=verb.summary, add_help=False)
    for listed in subparsers._choices_actions:  # the declared summary, whatever a module passed as help=
        if listed.dest in VERBS:
            listed.help = VERBS[listed.dest].summary
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
