"""Summary tables of a replication over seeds, with the multiplicity correction, from saved numbers.

A replication (``docs/results/<name>/``) trains every objective with several seeds in one or more
*sections* (a regime, a learning rate) and keeps each evaluation's numbers per seed. This module
turns one section's per-seed numbers into what its summary shows, as pure functions over the saved
data:

* each metric's mean ± 95% t-interval over seeds (:func:`deft.analysis.intervals.mean_interval`),
  with the share of truncated answers (``<benchmark> truncated %``) beside every accuracy;
* the paired difference of every objective to the reference, paired by seed
  (:func:`~deft.analysis.intervals.paired_difference`), with the paired t-test's two-sided p-value
  (:func:`~deft.analysis.intervals.paired_p_value`, ``n - 1`` degrees of freedom);
* the section's **family** (every objective x tested metric against the reference; truncation rows
  are descriptive and not tested) corrected by Holm-Bonferroni
  (:func:`~deft.analysis.intervals.holm`): ``*`` marks an adjusted p below ``alpha`` (family-wise
  error ``alpha``), ``°`` a difference whose uncorrected interval excludes 0 but that does not
  survive the correction.

Input of :func:`analyse`: ``{"Base": results, method: {seed: results}}`` with ``results`` an
evaluation's ``results.json`` (without ``_config``) plus ``"heldout"``: its held-out metrics (the
layout :func:`deft.analysis.tables.build_table` reads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["Comparison", "Section", "analyse", "decimals", "format_cell", "section_tables", "read_evaluation",
           "read_json_file", "read_seeded", "ALPHA", "FOUR_DECIMALS"]

ALPHA = 0.05
# token-level metrics shown with 4 decimals (nats, probabilities); percentages get 1
FOUR_DECIMALS = frozenset({"heldout_nll", "heldout_mean_p", "drift_kl", "retained_nll", "content_nll",
                           "content_mean_p", "end_nll", "end_mean_p"})


@dataclass
class Comparison:
    """Paired difference of one objective to the reference on one metric: ``diff`` = (mean, 95%
    half-width or None, n seeds), ``p`` the paired t-test p-value, ``p_holm`` its Holm-adjusted value
    within the section's family (``None`` outside the family)."""

    diff: tuple
    p: Optional[float]
    p_holm: Optional[float] = None
    alpha: float = ALPHA

    @property
    def marker(self) -> str:
        """``*`` survives the correction, ``°`` outside the noise uncorrected only, else empty."""
        from .intervals import outside_noise

        if self.p_holm is not None and self.p_holm < self.alpha:
            return "*"
        return "°" if outside_noise(self.diff) else ""


@dataclass
class Section:
    """One section's numbers: ``values[method][title] = {seed: value}`` (display units), the row
    ``titles`` in table order, which of them are ``tested`` (in the family), the ``comparisons``
    ``{(method, title): Comparison}``, the probe summary (``{}`` when there is none) and the
    ``reference`` method."""

    name: str
    probe: dict
    methods: list
    values: dict
    titles: list
    tested: list
    comparisons: dict
    reference: str = "nll"
    extra: dict = field(default_factory=dict)

    def cell(self, method: str, title: str) -> Optional[tuple]:
        """``(mean, half-width or None, n)`` or ``None`` when the method has no value."""
        from .intervals import mean_interval

        v = [x for x in self.values[method].get(title, {}).values() if x is not None]
        if not v:
            return None
        mean, half = mean_interval(v)
        return mean, half, len(v)

    def family_counts(self) -> tuple[int, int, int]:
        """``(comparisons in the family, surviving Holm, outside the noise uncorrected only)``."""
        marks = [c.marker for (_, t), c in self.comparisons.items() if t in self.tested]
        return len(marks), marks.count("*"), marks.count("°")


def analyse(name: str, data: dict, probe: dict, *, methods: Sequence[str], token_metrics: Sequence[str],
            reference: str = "nll", alpha: float = ALPHA) -> Section:
    """Means, paired differences and the Holm-corrected family of one section.

    ``methods``: the objectives to show, in order (others in ``data`` are ignored); ``token_metrics``:
    the token-level rows (titles of :func:`deft.analysis.tables.build_table`) after the accuracies,
    those no method has are left out."""
    from .intervals import holm, paired_difference, paired_p_value
    from .tables import build_table

    table = build_table(data)
    shown = [m for m in methods if m in data]
    values = {m: dict(table.values[m]) for m in table.methods}
    titles, tested = [], []
    for c in table.columns:  # accuracies, each followed by its truncated share (descriptive, not tested)
        if c.group in ("heldout", "_avg"):
            continue
        titles.append(c.title)
        if c.judged:
            tested.append(c.title)
    for t in token_metrics:
        if any(table.cell(m, t) for m in shown):
            titles.append(t)
            tested.append(t)
    comparisons = {}
    for m in shown:
        if m == reference:
            continue
        for t in titles:
            d = paired_difference(values[m][t], values[reference][t])
            if d is not None:
                comparisons[(m, t)] = Comparison(d, paired_p_value(values[m][t], values[reference][t]), alpha=alpha)
    family = [k for k in comparisons if k[1] in tested and comparisons[k].p is not None]
    for k, adj in zip(family, holm([comparisons[k].p for k in family])):
        comparisons[k].p_holm = adj
    return Section(name, probe, shown, values, titles, tested, comparisons, reference)


def decimals(title: str) -> int:
    """4 decimals for the token-level metrics in nats or probabilities, 1 for percentages."""
    return 4 if title in FOUR_DECIMALS else 1


def format_cell(cell: Optional[tuple], dec: int, sign: bool = False) -> str:
    """``mean ± half`` (or ``mean`` alone, or ``-`` for no value) at ``dec`` decimals."""
    if cell is None:
        return "-"
    mean, half = cell[0], cell[1]
    return f"{mean:{'+' if sign else ''}.{dec}f}" + ("" if half is None else f" ± {half:.{dec}f}")


def section_tables(sec: Section, labels: dict, *, unit: str = "seeds") -> list[str]:
    """Markdown lines of one section's two tables: the means (Base first) and the paired differences
    to the reference with their markers, introduced by the family's counts. ``labels`` maps a method
    to its column title."""
    methods, ref = sec.methods, sec.reference
    n, star, deg = sec.family_counts()
    others = [m for m in methods if m != ref]
    lines = ["| metric | Base | " + " | ".join(labels[m] for m in methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]
    for t in sec.titles:
        dec = decimals(t)
        lines.append(f"| {t} | {format_cell(sec.cell('Base', t), dec)} | "
                     + " | ".join(format_cell(sec.cell(m, t), dec) for m in methods) + " |")
    lines += ["", f"Paired difference to {labels[ref]} (method - {labels[ref]}, mean ± 95% interval over {unit}). "
              f"Family: {n} comparisons ({len(others)} objectives x {len(sec.tested)} metrics); {star} survive "
              f"Holm (`*`), {deg} more are outside the noise uncorrected only (`°`):", "",
              "| metric | " + " | ".join(labels[m] for m in others) + " |", "|---|" + "---:|" * len(others)]
    for t in sec.titles:
        cells = []
        for m in others:
            c = sec.comparisons.get((m, t))
            cells.append("-" if c is None else format_cell(c.diff, decimals(t), sign=True) + c.marker)
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return lines


def read_evaluation(folder) -> dict:
    """One evaluation folder as :func:`analyse` reads it: ``results.json`` without its ``_config``
    (and other ``_`` keys), plus ``"heldout"``: ``heldout.json``'s metrics; either file may be absent."""
    folder = Path(folder)
    res = {}
    if (folder / "results.json").exists():
        res = {k: v for k, v in json.loads((folder / "results.json").read_text()).items() if not k.startswith("_")}
    if (folder / "heldout.json").exists():
        res["heldout"] = json.loads((folder / "heldout.json").read_text())["metrics"]
    return res


def read_json_file(path, *, missing: str) -> dict:
    """A committed JSON file of a replication; ``ValueError("<path>: missing; <missing>")`` when it
    is absent (``missing`` says how to make it), ``"<path>: not valid JSON (...)"`` when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: missing; {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def read_seeded(path, methods: Sequence[str], reference: str, *, missing: str) -> dict:
    """``{"Base": x, method: {seed: x}}`` of ``methods`` from a committed file laid out
    ``{"Base": x, method: {"<seed>": x}}`` (seeds become ints; other methods are ignored), as
    :func:`analyse` reads it. ``ValueError`` naming the file when it is missing or unreadable (see
    :func:`read_json_file`), lacks ``Base`` or ``reference``, or a method does not map seeds."""
    data = read_json_file(path, missing=missing)
    if "Base" not in data or reference not in data:
        raise ValueError(f"{path}: needs 'Base' and '{reference}' entries (written by --collect)")
    out = {"Base": data["Base"]}
    for m in methods:
        if m in data:
            try:
                out[m] = {int(s): r for s, r in data[m].items()}
            except (AttributeError, ValueError):
                raise ValueError(f"{path}: '{m}' must map seed numbers to results") from None
    return out
