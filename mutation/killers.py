"""Which tests to try first on a mutant: the tests that killed its neighbours.

A mutant's run stops at its first failing test (``-x``), so a killed mutant costs the tests that
run before its killer, and collecting the whole selection costs a third of a second on its own.
Mutants of one line, or of one function, are nearly always killed by the same few tests; the
runner therefore first runs only those (a *first stage*: collecting one or two files, running a
handful of tests) and runs the whole selection only when none of them fails. The first stage can
only kill: whether a mutant survives is always decided by the whole selection.

``KillerMemory`` remembers, during one group's run, which test killed which mutant (by module,
line and enclosing definition) and proposes the candidates for the next one: the killers of the
same line (most recent first), then of the same definition, then the group's most frequent ones.

The likely killers run together, in one pytest session, in the order ``candidates`` gives. A kill
in that first stage counts only if the same session passes on the unmutated code (a test may fail
after another one's side effect): each such kill is recorded in the mutant's stored output
(``mark_first_stage``), and at the end of the group's run every recorded session is run once on the
unmutated code; the mutants of one that fails there are run again on the whole selection
(``mutation/run.py``). The records stay in the session, so an interrupted run is checked when it is
resumed.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

__all__ = ["KillerMemory", "definition_at", "definitions_of", "first_stage_of", "killer_of", "mark_checked",
           "mark_first_stage", "FIRST_STAGE", "FIRST_STAGE_CHECKED"]

FIRST_STAGE = "[mutation] killed by the first stage, not yet run unmutated:"
FIRST_STAGE_CHECKED = "[mutation] killed by the first stage, which passes unmutated:"

# pytest's short summary (-rfE, the default): "FAILED tests/t.py::name[id] - message",
# "ERROR tests/t.py - ImportError ..." (a collection error names the file); a parameter id may
# itself hold " - "
_SUMMARY = re.compile(r"^(?:FAILED|ERROR) ([^\s\[]+(?:\[.*?\])?)(?= - |\s*$)")


def killer_of(output: str) -> str | None:
    """The node id (or test file) of the first failure in pytest ``output``, or None."""
    for line in output.splitlines():
        match = _SUMMARY.match(line)
        if match:
            return match.group(1)
    return None


def mark_first_stage(output: str, first: list[str]) -> str:
    """``output`` of a mutant killed by the first stage ``first`` (node ids, in run order), with the
    record that this stage still has to pass on the unmutated code."""
    return f"{output.rstrip()}\n{FIRST_STAGE} {json.dumps(first)}\n"


def first_stage_of(output: str) -> list[str] | None:
    """The first stage recorded by ``mark_first_stage`` and not yet checked, or None."""
    last = output.rstrip().rpartition("\n")[2]
    return json.loads(last[len(FIRST_STAGE):]) if last.startswith(FIRST_STAGE) else None


def mark_checked(output: str) -> str:
    """``output`` with its first-stage record marked as passing on the unmutated code."""
    head, _, last = output.rstrip().rpartition("\n")
    return f"{head}\n{last.replace(FIRST_STAGE, FIRST_STAGE_CHECKED, 1)}\n"


def definitions_of(source: str) -> list[tuple[int, int, str]]:
    """``(first line, last line, qualified name)`` of every function and class in ``source``,
    innermost last: a line's definition is the last span containing it."""
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                spans.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return spans


def definition_at(spans: list[tuple[int, int, str]], line: int) -> str:
    """The innermost definition of ``spans`` containing ``line`` ("" at module level)."""
    found = ""
    for first, last, name in spans:
        if first <= line <= last:
            found = name
    return found


class KillerMemory:
    """The killers seen so far in one group's run, and the candidates for the next mutant."""

    def __init__(self, limit: int = 3):
        self.limit = limit
        self._by_line: dict[tuple[str, int], list[str]] = {}
        self._by_definition: dict[tuple[str, str], list[str]] = {}
        self._counts: Counter[str] = Counter()
        self._spans: dict[str, list[tuple[int, int, str]]] = {}

    def _definition(self, module: Path, line: int) -> str:
        key = str(module)
        if key not in self._spans:
            try:
                self._spans[key] = definitions_of(Path(module).read_text())
            except (OSError, SyntaxError):
                self._spans[key] = []
        return definition_at(self._spans[key], line)

    def candidates(self, module: Path, line: int) -> list[str]:
        """Up to ``limit`` distinct tests to try first on a mutant of ``module`` at ``line``."""
        chosen: list[str] = []
        same_line = self._by_line.get((str(module), line), [])
        same_definition = self._by_definition.get((str(module), self._definition(module, line)), [])
        frequent = [node for node, _ in self._counts.most_common(self.limit)]
        for node in [*reversed(same_line), *reversed(same_definition), *frequent]:
            if node not in chosen:
                chosen.append(node)
            if len(chosen) == self.limit:
                break
        return chosen

    def record(self, module: Path, line: int, killer: str) -> None:
        """Remember that ``killer`` killed a mutant of ``module`` at ``line``."""
        for key, table in (((str(module), line), self._by_line),
                           ((str(module), self._definition(module, line)), self._by_definition)):
            nodes = table.setdefault(key, [])
            if killer in nodes:
                nodes.remove(killer)
            nodes.append(killer)
        self._counts[killer] += 1
