"""Result tables of a comparison: pure functions over saved results (no model, no training).

Input: ``{method: results}`` where ``results`` is one ``results.json`` mapping of ``deft eval``
(benchmark -> metrics), optionally with a ``"heldout"`` entry (:func:`deft.eval.heldout.heldout_metrics`),
or ``{seed: such a mapping}`` for a method run with several seeds.

Columns: each benchmark's metrics in percent (FigFont: exact match and Jaro-Winkler, paper Table
3; others: Average@k, Tables 1-2), each followed by its ``truncated %`` (answers that hit the token
limit; descriptive: never marked, not averaged), ``Avg`` (the accuracies' unweighted mean, per
seed), then the token-level metrics of :mod:`deft.eval.heldout` (:data:`HELDOUT_COLUMNS`), led by the content tokens:
``content_nll``, ``content_mean_p``, ``content learned %``, ``content forgotten %``, then
``end_mean_p`` (end-of-turn / template tokens), ``drift_kl``, ``retained_nll`` and the all-token
``heldout_nll``, ``heldout_mean_p``, ``learned %``, ``forgotten %``; a token-level column shows
only when some method has it. Last, ``seeds`` (how many seeds a row averages). Every cell is the mean
over seeds with its 95% interval (:mod:`deft.analysis.intervals`).

Marks: in each column the best method is bold and the second underlined (direction-aware: lower
is better for NLL and KL) — with several seeds only when the paired difference to the next method
is outside the noise (its 95% interval excludes 0); with one seed, as in the paper, wherever the
values differ. A second table gives each objective's paired difference to ``nll``.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .intervals import mean_interval, outside_noise, paired_difference

__all__ = ["Column", "HELDOUT_COLUMNS", "table_columns", "build_table", "format_markdown", "format_differences",
           "format_html", "write_tables", "read_tables", "TABLE_FILE", "Table"]

TABLE_FILE = "table.json"  # the inputs of the tables, beside results.md (read by 'deft plot --results')


@dataclass(frozen=True)
class Column:
    """One table column: where its value is (``group``, ``key``), its title, whether higher is
    better, the factor applied for display (100 for accuracies in percent) and decimals."""

    group: str
    key: str
    title: str
    higher_better: bool = True
    scale: float = 100.0
    decimals: int = 2
    judged: bool = True  # False: descriptive (a benchmark's truncated share): no marks, not in Avg


HELDOUT_COLUMNS = (
    # content tokens lead: end-of-turn tokens are learned first and dominate all-token metrics
    # (deft.eval.heldout); the Figure 1 shares (percent) count tokens whose p rose / fell by > 0.01
    Column("heldout", "content_nll", "content_nll", False, 1.0, 4),
    Column("heldout", "content_mean_p", "content_mean_p", True, 1.0, 4),
    Column("heldout", "content_learned", "content learned %", True, 100.0, 1),
    Column("heldout", "content_forgotten", "content forgotten %", False, 100.0, 1),
    Column("heldout", "end_mean_p", "end_mean_p", True, 1.0, 4),
    Column("heldout", "drift_kl", "drift_kl", False, 1.0, 4),
    Column("heldout", "retained_nll", "retained_nll", False, 1.0, 4),
    # all response tokens, as before the split (same titles, for readers of older tables)
    Column("heldout", "heldout_nll", "heldout_nll", False, 1.0, 4),
    Column("heldout", "heldout_mean_p", "heldout_mean_p", True, 1.0, 4),
    Column("heldout", "learned", "learned %", True, 100.0, 1),
    Column("heldout", "forgotten", "forgotten %", False, 100.0, 1),
)
_AVG = Column("_avg", "avg", "Avg")


def table_columns(results: dict) -> list[Column]:
    """Accuracy columns of one results mapping: FigFont gets exact match and Jaro-Winkler (paper
    Table 3), the others Average@k (Tables 1, 2)."""
    cols = []
    for bench, res in results.items():
        if bench.startswith("_") or bench in ("average", "heldout") or not isinstance(res, dict):
            continue
        if "jaro_winkler" in res:
            cols += [Column(bench, "exact", f"{bench} EM"), Column(bench, "jaro_winkler", f"{bench} JW")]
        else:
            cols.append(Column(bench, "average_at_k", f"{bench} Avg@{res.get('k', 1)}"))
        if "truncated" in res:  # beside every accuracy: answers cut by the token limit score as they stand
            cols.append(Column(bench, "truncated", f"{bench} truncated %", False, 100.0, 1, judged=False))
    return cols


def _by_seed(results: dict) -> dict:
    """``{seed: results}``; a plain results mapping is one measurement (seed ``None``)."""
    if results and all(isinstance(k, int) or (isinstance(k, str) and k.isdigit()) for k in results):
        return {int(k): v for k, v in results.items()}
    return {None: results}


@dataclass
class Table:
    """``columns``, ``methods`` (row order) and ``values[method][column title] = {seed: value}``
    (display units: percent for accuracies)."""

    columns: list
    methods: list
    values: dict

    def cell(self, method: str, title: str) -> Optional[tuple[float, Optional[float], int]]:
        """``(mean, 95% half-width or None, n seeds)`` or ``None`` when the method has no value."""
        v = [x for x in self.values[method][title].values() if x is not None]
        if not v:
            return None
        mean, half = mean_interval(v)
        return mean, half, len(v)

    def seeds(self, method: str) -> int:
        return max((len(self.values[method][c.title]) for c in self.columns), default=0)


def build_table(results_by_method: dict) -> Table:
    """The :class:`Table` of ``{method: results or {seed: results}}`` (see the module docstring)."""
    per_method = {m: _by_seed(r) for m, r in results_by_method.items()}
    acc: list[Column] = []
    for runs in per_method.values():
        for res in runs.values():
            acc += [c for c in table_columns(res) if c not in acc]
    columns = [*acc, _AVG, *HELDOUT_COLUMNS]
    values = {}
    for method, runs in per_method.items():
        row = {c.title: {} for c in columns}
        for seed, res in runs.items():
            present = []
            for c in acc:
                v = (res.get(c.group) or {}).get(c.key)
                row[c.title][seed] = None if v is None else c.scale * float(v)
                if v is not None and c.judged:
                    present.append(c.scale * float(v))
            row["Avg"][seed] = sum(present) / len(present) if present else None
            for c in HELDOUT_COLUMNS:
                v = (res.get("heldout") or {}).get(c.key)
                row[c.title][seed] = None if v is None else c.scale * float(v)
        values[method] = row
    return Table(columns, list(per_method), values)


def _marks(table: Table, col: Column) -> dict[str, str]:
    """``{method: "best" | "second"}`` for one column (see the module docstring)."""
    if not col.judged:
        return {}
    cells = {m: table.cell(m, col.title) for m in table.methods}
    ranked = sorted((m for m in table.methods if cells[m] is not None),
                    key=lambda m: cells[m][0], reverse=col.higher_better)
    if len(ranked) < 2:
        return {}
    several = any(cells[m][2] > 1 for m in ranked)

    def beats(a, b) -> bool:
        if several:
            return outside_noise(paired_difference(table.values[a][col.title], table.values[b][col.title]))
        return cells[a][0] != cells[b][0]

    marks = {}
    if beats(ranked[0], ranked[1]):
        marks[ranked[0]] = "best"
    if len(ranked) > 2 and beats(ranked[1], ranked[2]):
        marks[ranked[1]] = "second"
    return marks


def _fmt(cell, decimals: int) -> str:
    if cell is None:
        return "-"
    mean, half, _ = cell
    return f"{mean:.{decimals}f}" if half is None else f"{mean:.{decimals}f} ± {half:.{decimals}f}"


def _used_columns(table: Table) -> list[Column]:
    """Every accuracy column and Avg; a token-level column only when some method has it."""
    return [c for c in table.columns
            if c.group != "heldout" or any(table.cell(m, c.title) for m in table.methods)]


def _main_rows(table: Table) -> tuple[list[Column], list[tuple[str, list[tuple[str, Optional[str]]], int]]]:
    """``(columns, [(method, [(cell text, "best" | "second" | None)], seeds)])``: the cells of the
    table every format shows (markdown, HTML)."""
    cols = _used_columns(table)
    marks = {c.title: _marks(table, c) for c in cols}
    rows = [(method, [(_fmt(table.cell(method, c.title), c.decimals), marks[c.title].get(method)) for c in cols],
             table.seeds(method)) for method in table.methods]
    return cols, rows


def _footnote(table: Table) -> str:
    several = any(table.seeds(m) > 1 for m in table.methods)
    return ("Accuracies in percent; content_*: held-out content tokens (the response text), end_mean_p: "
            "end-of-turn / template tokens, heldout_*, learned %, forgotten %: all response tokens; NLLs in nats "
            "per token (lower is better), drift_kl = KL(base || tuned) in nats per token (lower: less "
            "forgetting); learned % / forgotten %: held-out tokens whose probability rose / fell by more than "
            "0.01 from the base model (paper Figure 1). "
            + ("Cells are means over seeds ± the 95% interval (t-distribution). Bold: best, underlined: "
               "second, marked only where the paired difference to the next method is outside the noise "
               "(its 95% interval excludes 0)." if several else
               "One seed: bold marks the best value, underlined the second, wherever values differ; no "
               "interval, so a mark does not say the difference is outside the noise."))


def format_markdown(table: Table, *, title: str = "") -> str:
    """Markdown table: best value of each column in bold, second underlined, with a footnote on
    what the marks and intervals mean."""
    cols, rows = _main_rows(table)
    lines = [f"### {title}", ""] if title else []
    lines.append("| Method | " + " | ".join(c.title for c in cols) + " | seeds |")
    lines.append("|---|" + "---:|" * (len(cols) + 1))
    for method, cells, seeds in rows:
        texts = [f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text
                 for text, mark in cells]
        lines.append(f"| {method} | " + " | ".join(texts) + f" | {seeds} |")
    lines.append("")
    lines.append(_footnote(table))
    return "\n".join(lines) + "\n"


def _difference_rows(table: Table, reference: str) -> Optional[tuple[list[Column], list[tuple[str, list[str]]]]]:
    """``(columns, [(method, [cell text])])`` of each method's paired difference to ``reference``;
    ``None`` when ``reference`` is absent or no other method is there."""
    if reference not in table.methods:
        return None
    cols = _used_columns(table)
    others = [m for m in table.methods if m != reference and m.lower() != "base"]
    if not others:
        return None
    rows = []
    for m in others:
        cells = []
        for c in cols:
            d = paired_difference(table.values[m][c.title], table.values[reference][c.title])
            if d is None:
                cells.append("-")
                continue
            text = f"{d[0]:+.{c.decimals}f}" + ("" if d[1] is None else f" ± {d[1]:.{c.decimals}f}")
            cells.append(text + ("*" if outside_noise(d) else ""))
        rows.append((m, cells))
    return cols, rows


def _difference_caption(reference: str, code: str) -> str:
    return (f"Paired difference to {code} (method - {reference}), mean ± 95% interval over seeds; "
            "* = outside the noise.")


def format_differences(table: Table, reference: str = "nll") -> str:
    """Markdown table of each method's paired difference to ``reference`` (mean ± 95% half-width
    over shared seeds; ``*`` where the interval excludes 0). Empty when ``reference`` is absent."""
    found = _difference_rows(table, reference)
    if found is None:
        return ""
    cols, rows = found
    lines = [_difference_caption(reference, f"`{reference}`"), "",
             "| Method | " + " | ".join(c.title for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {m} | " + " | ".join(cells) + " |" for m, cells in rows]
    return "\n".join(lines) + "\n"


def format_html(table: Table, *, title: str = "", reference: str = "nll") -> str:
    """The tables of :func:`format_markdown` and :func:`format_differences` as HTML, with the same
    cells: ``<table class="results">`` (best in ``<strong>``, second in ``<u>``, a ``data-mark``
    attribute on marked cells), its footnote, then ``<table class="differences">`` when
    ``reference`` is a row. Every text is escaped."""
    esc = html.escape
    cols, rows = _main_rows(table)
    parts = [f"<h3>{esc(title)}</h3>"] if title else []
    parts.append('<table class="results"><thead><tr><th>Method</th>'
                 + "".join(f"<th>{esc(c.title)}</th>" for c in cols) + "<th>seeds</th></tr></thead><tbody>")
    for method, cells, seeds in rows:
        tds = []
        for text, mark in cells:
            inner = (f"<strong>{esc(text)}</strong>" if mark == "best" else f"<u>{esc(text)}</u>" if mark == "second"
                     else esc(text))
            tds.append(f'<td data-mark="{mark}">{inner}</td>' if mark else f"<td>{inner}</td>")
        parts.append(f"<tr><th scope=\"row\">{esc(method)}</th>{''.join(tds)}<td>{seeds}</td></tr>")
    parts.append(f'</tbody></table><p class="note">{esc(_footnote(table))}</p>')
    found = _difference_rows(table, reference)
    if found is not None:
        dcols, drows = found
        parts.append(f'<p>{_difference_caption(esc(reference), f"<code>{esc(reference)}</code>")}</p>'
                     '<table class="differences"><thead><tr><th>Method</th>'
                     + "".join(f"<th>{esc(c.title)}</th>" for c in dcols) + "</tr></thead><tbody>")
        parts += [f"<tr><th scope=\"row\">{esc(m)}</th>" + "".join(f"<td>{esc(x)}</td>" for x in cells) + "</tr>"
                  for m, cells in drows]
        parts.append("</tbody></table>")
    return "".join(parts)


def _csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    titles = [c.title for c in table.columns]
    writer.writerow(["method", *titles, "seeds", *(f"{t} ci95" for t in titles)])
    for m in table.methods:
        cells = [table.cell(m, t) for t in titles]
        writer.writerow([m, *("" if c is None else f"{c[0]:.6g}" for c in cells), table.seeds(m),
                         *("" if c is None or c[1] is None else f"{c[1]:.6g}" for c in cells)])
    return buf.getvalue()


def write_tables(results_by_method: dict, out, *, title: str = "", reference: str = "nll") -> str:
    """Write ``results.md`` (the table and the differences to ``reference``), ``results.csv``
    (first column ``method``, base row first, means then ``seeds`` then 95% half-widths) and
    ``table.json`` (their inputs, for :func:`read_tables` and ``deft plot --results``), each
    atomically; return the markdown."""
    from ..io import atomic_write_json, atomic_write_text

    table = build_table(results_by_method)
    md = format_markdown(table, title=title)
    diff = format_differences(table, reference)
    if diff:
        md += "\n" + diff
    out = Path(out)
    atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "results.csv", _csv(table))
    atomic_write_json(out / TABLE_FILE, {"title": title, "reference": reference, "results": results_by_method})
    return md


def read_tables(path) -> dict:
    """``{"title", "reference", "results", "paired"}`` as :func:`write_tables` saved them, from a
    folder that holds ``table.json`` (``deft compare --out``, ``deft demo --out``) or the file itself;
    the ``results`` go to :func:`build_table` unchanged, ``paired`` is the per-problem bootstrap
    table (:func:`deft.analysis.paired.paired_differences`) or ``None``. A missing or unreadable file raises a one-line
    ``FileNotFoundError`` / ``ValueError`` naming it."""
    path = Path(path)
    file = path / TABLE_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no results table here (written by 'deft compare' and 'deft demo' "
                                "beside results.md); pass their --out folder")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{file}: not a results table (a mapping with 'results': {{method: results}})")
    paired = data.get("paired")
    return {"title": str(data.get("title") or ""), "reference": str(data.get("reference") or "nll"),
            "results": data["results"], "paired": paired if isinstance(paired, dict) else None}
