"""The mutation-testing report: score per module and every surviving mutant.

Score of a module = killed / (mutants run - equivalent survivors). A survivor is *equivalent*
when ``mutation/equivalent.toml`` records it (matched by module, the original line and the
mutated line or the operator, so the record survives edits elsewhere in the file) with the reason no test can
tell it from the original. Skipped mutants (filtered operators, outside the selected
definitions) are not counted.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

__all__ = ["write_report", "load_equivalent", "match_equivalent", "diff_lines", "diff_row", "docs_section",
           "replace_docs_block"]


ANNOTATION_REASON = "inside a type annotation, which `from __future__ import annotations` never evaluates"


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``((line, col), (end_line, end_col))`` of every annotation in ``path`` when the module has
    ``from __future__ import annotations`` (then no annotation is ever evaluated), else ``[]``."""
    import ast

    try:
        tree = ast.parse(path.read_text())
    except SyntaxError as err:  # a group's run has a mutant applied to its copy right now
        raise SystemExit(f"mutation: {path}: not valid Python ({err.msg}, line {err.lineno}); a run of its "
                         "group is probably applying a mutant: rebuild the report when it ends") from None
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                 any(a.name == "annotations" for a in n.names) for n in tree.body)
    if not future:
        return []
    nodes = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            nodes.append(node.returns)
        elif isinstance(node, ast.arg) and node.annotation is not None:
            nodes.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            nodes.append(node.annotation)
    return [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in nodes]


def in_spans(spans: list, pos: tuple[int, int]) -> bool:
    """Whether the source position ``pos`` = (line, col) lies inside one of ``spans``."""
    return any(start <= tuple(pos) < end for start, end in spans)


def diff_lines(diff: str) -> tuple[str, str]:
    """``(original line, mutated line)`` of a one-line cosmic-ray diff, stripped."""
    before = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    after = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return " ".join(s.strip() for s in before if s.strip()), " ".join(s.strip() for s in after if s.strip())


RECORD_KEYS = {"module", "before", "after", "operators", "above", "every_occurrence", "reason"}


def diff_row(module: str, operator: str, diff: str) -> dict:
    """The fields an equivalence record is matched on, from one mutant's cosmic-ray diff:
    ``module``, ``operator`` (without ``core/``), ``before``/``after`` (the changed line, stripped)
    and ``above`` (the nearest non-blank unchanged line above it, stripped)."""
    before, after = diff_lines(diff)
    above = ""
    for ln in diff.splitlines():
        if ln.startswith("-") and not ln.startswith("---"):
            break
        if ln.startswith(" ") and ln.strip():
            above = ln.strip()
    return {"module": module, "operator": operator.removeprefix("core/"), "before": before, "after": after,
            "above": above}


def load_equivalent(path: Path) -> list[dict]:
    """The records of ``equivalent.toml``: ``module``, ``before``, ``reason`` and either ``after``
    (one mutant) or ``operators`` (a regular expression: every mutant of that line by those operators);
    optionally ``above``, text that the nearest non-blank line above the mutated one must contain,
    to single out one of several identical ``before`` lines of the module."""
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text())
    out = []
    for i, entry in enumerate(data.get("equivalent", []), 1):
        for key in ("module", "before", "reason"):
            if not entry.get(key):
                raise SystemExit(f"{path}: entry {i}: missing '{key}'")
        if bool(entry.get("after")) == bool(entry.get("operators")):
            raise SystemExit(f"{path}: entry {i}: give exactly one of 'after' and 'operators'")
        unknown = set(entry) - RECORD_KEYS
        if unknown:
            raise SystemExit(f"{path}: entry {i}: unknown key '{sorted(unknown)[0]}' "
                             f"(known: {', '.join(sorted(RECORD_KEYS))})")
        out.append({**entry, "before": entry["before"].strip(), "after": entry.get("after", "").strip(),
                    "operators": re.compile(entry["operators"]) if entry.get("operators") else None})
    return out


def match_equivalent(records: list[dict], row: dict) -> str | None:
    """The reason recorded for the surviving mutant ``row`` (see ``diff_row``), or None."""
    for r in records:
        if r["module"] != row["module"] or r["before"] != row["before"]:
            continue
        if r.get("above") and r["above"] not in row.get("above", ""):
            continue
        if (r["operators"] is not None and r["operators"].fullmatch(row["operator"])) or r["after"] == row["after"]:
            return r["reason"]
    return None


def _session_rows(session: Path) -> list[dict]:
    work = session.parent
    spans: dict[str, list] = {}
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    rows = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome in (WorkerOutcome.SKIPPED, WorkerOutcome.NO_TEST):
                continue
            m = item.mutations[0]
            if result.worker_outcome == WorkerOutcome.EXCEPTION:
                outcome = "error"
            elif result.test_outcome == TestOutcome.SURVIVED:
                outcome = "survived"
            else:
                outcome = "killed"
            module = str(m.module_path)
            if module not in spans:
                spans[module] = annotation_spans(work / module) if (work / module).exists() else []
            rows.append({**diff_row(module, m.operator_name, result.diff or ""), "line": m.start_pos[0],
                         "annotation": in_spans(spans[module], m.start_pos), "outcome": outcome})
        pending = len(db.pending_work_items)
    if pending:
        rows.append({"pending": pending})
    return rows


def write_report(build: Path, groups: dict, equivalent_path: Path, root: Path) -> Path:
    """Write ``build/report.md`` and ``build/report.json`` from every group's session."""
    equivalent = load_equivalent(equivalent_path)
    modules: dict[str, dict] = {}
    survivors = []
    notes = []
    for name in groups:
        session = build / name / "session.sqlite"
        if not session.exists():
            notes.append(f"group `{name}`: not run (`python mutation/run.py {name}`)")
            continue
        for row in _session_rows(session):
            if "pending" in row:
                notes.append(f"group `{name}`: {row['pending']} mutants not run yet (interrupted run)")
                continue
            mod = modules.setdefault(row["module"], {"group": name, "mutants": 0, "killed": 0, "survived": 0,
                                                     "equivalent": 0, "error": 0})
            mod["mutants"] += 1
            if row["outcome"] == "killed":
                mod["killed"] += 1
            elif row["outcome"] == "error":
                mod["error"] += 1
            else:
                reason = ANNOTATION_REASON if row["annotation"] else match_equivalent(equivalent, row)
                mod["equivalent" if reason else "survived"] += 1
                survivors.append({**row, "group": name, "equivalent": reason})
    for mod in modules.values():
        live = mod["mutants"] - mod["equivalent"] - mod["error"]
        mod["score"] = round(100.0 * mod["killed"] / live, 1) if live else 100.0

    lines = ["# Mutation testing report", "",
             "Score = killed / (mutants - equivalent - errors); errors are mutants cosmic-ray could not run.",
             "", "| module | group | mutants | killed | survived | equivalent | errors | score |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for module, m in sorted(modules.items()):
        lines.append(f"| {module} | {m['group']} | {m['mutants']} | {m['killed']} | {m['survived']} | "
                     f"{m['equivalent']} | {m['error']} | {m['score']}% |")
    lines += [""] + [f"- {n}" for n in notes]
    lines += ["", "## Surviving mutants", ""]
    for s in sorted(survivors, key=lambda s: (s["module"], s["line"], s["operator"])):
        reason = " ".join((s["equivalent"] or "").split())
        tag = f"equivalent: {reason}" if reason else "**not killed**"
        lines += [f"- `{s['module']}:{s['line']}` {s['operator']} — {tag}",
                  f"  - `{s['before']}`", f"  + `{s['after']}`"]
    if not survivors:
        lines.append("none")
    build.mkdir(parents=True, exist_ok=True)
    out = build / "report.md"
    out.write_text("\n".join(lines) + "\n")
    (build / "report.json").write_text(json.dumps({"modules": modules, "survivors": survivors}, indent=1) + "\n")
    (build / "docs_section.md").write_text(docs_section(modules, survivors, notes))
    return out


DOCS_START = "<!-- mutation-report: written by `python mutation/run.py --report --docs` -->"
DOCS_END = "<!-- /mutation-report -->"


def docs_section(modules: dict, survivors: list[dict], notes: list[str]) -> str:
    """The scores and surviving mutants as the block of ``docs/testing.md``.

    One table row per module; survivors listed per module, those with the same reason under it
    once (annotation mutants counted, not listed); unmatched survivors marked **not killed**.
    """
    lines = ["| module | group | mutants | killed | equivalent | not killed | not run | score |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for module, m in sorted(modules.items()):
        lines.append(f"| `{module}` | {m['group']} | {m['mutants']} | {m['killed']} | {m['equivalent']} | "
                     f"{m['survived']} | {m['error']} | {m['score']}% |")
    lines += ["", "Score = killed / (mutants - equivalent - not run); *not run*: mutants cosmic-ray could not "
              "apply (e.g. an `ExceptionReplacer` on a tuple of exception classes)."]
    lines += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    by_module: dict[str, dict[str, list[dict]]] = {}
    for s in sorted(survivors, key=lambda s: (s["module"], s["line"], s["operator"])):
        if s["annotation"]:
            continue
        reason = " ".join((s["equivalent"] or "").split()) or "**not killed**"
        by_module.setdefault(s["module"], {}).setdefault(reason, []).append(s)
    for module, reasons in by_module.items():
        annotations = sum(1 for s in survivors if s["module"] == module and s["annotation"])
        lines += [f"`{module}`", ""]
        for reason, rows in reasons.items():
            lines.append(f"- {reason}")
            lines += [f"  - line {s['line']}: `{s['before']}` → `{s['after']}`" for s in rows]
        if annotations:
            lines.append(f"- {annotations} mutants inside type annotations: {ANNOTATION_REASON}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def replace_docs_block(text: str, block: str) -> str:
    """``text`` with the part between :data:`DOCS_START` and :data:`DOCS_END` replaced by ``block``."""
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start:
        raise ValueError(f"the docs have no '{DOCS_START}' ... '{DOCS_END}' block to replace")
    return text[:start + len(DOCS_START)] + "\n\n" + block.rstrip() + "\n\n" + text[end:]
