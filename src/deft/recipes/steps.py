"""One ``deft`` command run as a step of a recipe (compare's training runs, a paper cell's training
and evaluation steps): in a fresh Python process, so that each step starts with clean memory and a
crash in one step cannot take the recipe down with it.

:data:`start` is what starts a step; the tests of the recipes replace it with
:func:`in_this_process` (the same command lines and logs, without the few seconds that a fresh
process spends importing torch and transformers); the tests of this module start fresh ones.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable, TextIO

__all__ = ["in_fresh_process", "in_this_process", "run_deft", "start"]


def _logged(command: list[str], log_file: TextIO) -> int:
    """Run ``command`` with its output (stdout and stderr) in ``log_file``; its exit code."""
    return subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT).returncode


def in_fresh_process(argv: list[str], log_file: TextIO) -> int:
    """``python -m deft.cli.main ARGV`` with its output in ``log_file``; its exit code."""
    return _logged([sys.executable, "-m", "deft.cli.main", *argv], log_file)


def in_this_process(argv: list[str], log_file: TextIO) -> int:
    """``deft ARGV`` in the calling process, its output in ``log_file``; its exit code."""
    from ..cli.main import main

    with redirect_stdout(log_file), redirect_stderr(log_file):
        try:
            return main(list(argv))
        except SystemExit as exc:  # argparse's exits
            return exc.code if isinstance(exc.code, int) else 1


start: Callable[[list[str], TextIO], int] = in_fresh_process


def run_deft(command: list[str], log_path: Path, what: str) -> None:
    """Run a step's command line with its output in ``log_path``: ``["deft", "train", ...]``
    through :data:`start`, any other (an ``accelerate launch ... -m deft.cli.main`` prefix) as
    given; raise ``ValueError("<what> failed (<the log's last line>); see <log_path>")`` when it
    exits non-zero."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        code = start(list(command[1:]), log_file) if command[0] == "deft" else _logged(list(command), log_file)
    if code != 0:
        lines = log_path.read_text().strip().splitlines()
        raise ValueError(f"{what} failed ({lines[-1] if lines else 'no output'}); see {log_path}")
