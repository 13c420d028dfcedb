"""Result tables of a comparison: pure functions over saved ``results.json`` mappings.

Methods are rows, benchmark metrics columns (in percent), plus an unweighted average column;
the best value of a column is bold and the second best underlined (as in the paper's tables).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

__all__ = ["table_columns", "build_table", "format_markdown", "write_tables"]


def table_columns(results: dict) -> list[tuple[str, str, str]]:
    """``(benchmark, metric key, column title)`` for a results.json mapping: FigFont gets exact
    match and Jaro-Winkler (paper Table 3), the others Average@k (Tables 1, 2)."""
    cols = []
    for bench, res in results.items():
        if bench.startswith("_") or bench == "average" or not isinstance(res, dict):
            continue
        if "jaro_winkler" in res:
            cols += [(bench, "exact", f"{bench} EM"), (bench, "jaro_winkler", f"{bench} JW")]
        else:
            k = res.get("k", 1)
            cols.append((bench, "average_at_k", f"{bench} Avg@{k}"))
    return cols


def build_table(results_by_method: dict[str, dict]) -> tuple[list[str], list[list[Optional[float]]], list[str]]:
    """``(column titles, rows of values in percent, method names)``; the last column is the
    unweighted average of the others."""
    columns: list[tuple[str, str, str]] = []
    for res in results_by_method.values():
        for col in table_columns(res):
            if col not in columns:
                columns.append(col)
    rows, methods = [], []
    for method, res in results_by_method.items():
        values = []
        for bench, key, _ in columns:
            v = res.get(bench, {}).get(key)
            values.append(None if v is None else 100.0 * float(v))
        present = [v for v in values if v is not None]
        values.append(sum(present) / len(present) if present else None)
        rows.append(values)
        methods.append(method)
    return [title for _, _, title in columns] + ["Avg"], rows, methods


def _ranks(rows: list[list[Optional[float]]], col: int) -> tuple[Optional[float], Optional[float]]:
    """Best and second-best distinct values of a column; none when every method ties."""
    values = sorted({r[col] for r in rows if r[col] is not None}, reverse=True)
    if len(values) < 2:
        return None, None
    return values[0], values[1]


def format_markdown(titles, rows, methods, *, title: str = "") -> str:
    """Markdown table: best value of each column in bold, second best underlined."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| Method | " + " | ".join(titles) + " |")
    lines.append("|---|" + "---:|" * len(titles))
    best = [_ranks(rows, c) for c in range(len(titles))]
    for method, row in zip(methods, rows):
        cells = []
        for c, v in enumerate(row):
            if v is None:
                cells.append("-")
                continue
            text = f"{v:.2f}"
            if v == best[c][0]:
                text = f"**{text}**"
            elif v == best[c][1]:
                text = f"<u>{text}</u>"
            cells.append(text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(results_by_method: dict[str, dict], out: Path, *, title: str = "") -> str:
    """Write ``results.md`` and ``results.csv``; return the markdown."""
    titles, rows, methods = build_table(results_by_method)
    md = format_markdown(titles, rows, methods, title=title)
    (out / "results.md").write_text(md)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", *titles])
        for method, row in zip(methods, rows):
            writer.writerow([method, *("" if v is None else f"{v:.4f}" for v in row)])
    return md


