"""``deft`` entry point. Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)`` which registers the verb and sets ``func`` to its runner."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

# verb -> module in deft.cli; each module's add_parser() registers the verb with full help
SUBCOMMANDS = ("data", "train", "eval", "probe", "compare", "plot", "objectives", "curves", "demo")


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deft",
        description="Supervised fine-tuning with token-level objectives (NLL, DEFT, Cayley, DFT, EAFT, KD, ...).",
        epilog="Run 'deft <command> --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"deft {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for verb in SUBCOMMANDS:
        importlib.import_module(f"deft.cli.{verb}").add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, OSError) as err:
        print(f"deft {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deft {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
