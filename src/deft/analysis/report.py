"""The paper's figures from saved runs and probes, as PNG files and one ``index.html`` page.

The page reads on its own: it leads with the results table when one is given (the table ``deft
compare`` and ``deft demo`` print, same cells and intervals, best per column marked), then the
probes' verdicts, then the figures. It is self-contained — the figures are inlined as base64
``data:`` URIs and the style sheet is in the page — so it can be mailed or opened anywhere; the PNG
files are written beside it too.

Inputs (each optional; a figure is drawn when its inputs are given):

* **results** — ``{method: results}`` as :func:`deft.analysis.tables.build_table` takes them (or
  :func:`deft.analysis.tables.read_tables` of a ``deft compare`` / ``deft demo`` folder);

* **runs** — ``deft train`` output directories (``metrics.jsonl``): focus and mean ``p`` over
  training steps (Figure 5, :func:`deft.analysis.training_curves.plot_training_curves`);
* **probes** — ``deft probe --out`` directories (or their ``token_stats.npz`` / ``.pt`` files): the
  gradient landscape (Figure 2, :mod:`deft.analysis.landscape`) and the token-probability
  distribution (Figures 3, 4, 6, :mod:`deft.analysis.distribution`), plus a table of the probes'
  verdicts when ``probe.json`` is present;
* **before / after** — two probes of the same records under two checkpoints: token learning and
  forgetting (Figure 1, :mod:`deft.analysis.learning`);
* always — the theory curves: gate ``s(p)`` and learning signal ``W(p)`` of every objective
  (:mod:`deft.analysis.curves`).
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from ..config import option

__all__ = ["PlotConfig", "parse_labelled", "resolve_probe", "build_report", "plot_report"]


@dataclass
class PlotConfig:
    """Every option of ``deft plot`` (:func:`plot_report`)."""

    COMMAND = "plot"
    results: Optional[str] = option(None, "a 'deft compare' or 'deft demo' --out folder (or its table.json): the "
                                    "page leads with its results table, the cells and intervals the terminal table "
                                    "shows, best per column marked", metavar="DIR")
    runs: list[str] = option([], "'deft train' output directories with metrics.jsonl (comma-separated or repeated; "
                             "NAME=DIR to label a run)", metavar="DIR[,DIR...]")
    probes: list[str] = option([], "'deft probe --out' directories, or their token_stats.npz/.pt files (NAME=PATH "
                               "to label one; several after one flag)", split="none", nargs="+", metavar="PROBE")
    before: Optional[str] = option(None, "probe of the earlier checkpoint for the learning/forgetting figure (with "
                                   "--after)", metavar="PROBE")
    after: Optional[str] = option(None, "probe of the later checkpoint on the same records (with --before)",
                                  metavar="PROBE")
    objectives: list[str] = option(["nll", "p", "eaft", "cayley", "deft"], "comma-separated objectives of the "
                                   "gradient-landscape panels", split="specs")
    curve_objectives: list[str] = option([], "comma-separated objectives of the gate-curve figure (default: every "
                                         "objective that needs no reference, teacher or old policy)", split="specs")
    threshold: float = option(0.01, "|change in p| above which a token counts as learned or forgotten",
                              check="non_negative")
    max_points: int = option(20000, "tokens drawn per scatter panel, sampled with a fixed seed", check="positive")
    out: str = option("runs/plots", "output directory for the PNGs and index.html", metavar="DIR")


def parse_labelled(items: Iterable[str]) -> dict[str, str]:
    """``["name=path", "path", ...]`` -> ``{label: path}``; a bare path is labelled by its directory
    (``run/token_stats.npz`` -> ``run``, ``runs/nll`` -> ``nll``). Labels must be unique."""
    out: dict[str, str] = {}
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        label, eq, path = item.partition("=")
        if not eq or os.sep in label or Path(item).exists():
            label, path = "", item
        p = Path(path)
        if not label:
            label = p.parent.name if p.is_file() or p.suffix in (".npz", ".pt", ".json") else p.name
            label = label or str(p)
        base, k = label, 2
        while label in out:
            label, k = f"{base}-{k}", k + 1
        out[label] = path
    return out


def resolve_probe(path) -> tuple[Path, Optional[Path]]:
    """``(token_stats file, probe.json or None)`` for a probe directory, a ``probe.json`` or a token
    statistics file; ``FileNotFoundError`` when there is none."""
    path = Path(path)
    if path.is_dir():
        stats = next((path / n for n in ("token_stats.npz", "token_stats.pt") if (path / n).is_file()), None)
        if stats is None:
            raise FileNotFoundError(f"{path}: no token_stats.npz in this directory (write one with "
                                    f"'deft probe --out {path}')")
        summary = path / "probe.json"
        return stats, summary if summary.is_file() else None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such probe directory or token statistics file")
    if path.suffix == ".json":
        return resolve_probe(path.parent)[0], path
    summary = path.parent / "probe.json"
    return path, summary if summary.is_file() else None


def _img(path: Path, caption: str) -> str:
    """A figure with the PNG inlined as a ``data:`` URI (the page needs no file beside it)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}" '
            f'data-file="{html.escape(path.name)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _probe_table(summaries: Mapping[str, dict]) -> str:
    head = ("<tr><th>probe</th><th>model</th><th>tokens</th><th>mean p</th><th>mean focus</th>"
            "<th>Cayley focus of mean p</th><th>mean entropy</th><th>confident conflicts</th><th>regime</th>"
            "<th>recommended</th></tr>")
    rows = []
    for label, s in summaries.items():
        rec = s.get("recommendation", {})
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                label, s.get("model", ""), s.get("tokens", ""), f"{s['mean_p']:.4g}", f"{s['mean_focus']:.4g}",
                f"{s.get('cayley_focus_of_mean_p', float('nan')):.4g}", f"{s.get('mean_entropy', float('nan')):.3f}",
                f"{s.get('confident_conflicts', {}).get('share', float('nan')):.2%}", s.get("regime", ""),
                ", ".join(rec.get("objectives", [])))) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


_STYLE = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
          "img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}figcaption{color:#444;font-size:.9em}"
          "table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em}"
          "td{text-align:right}td[data-mark=best]{background:#eef6ee}.note{color:#444;font-size:.85em}")


def build_report(
    out,
    *,
    runs: Optional[Mapping[str, str]] = None,
    probes: Optional[Mapping[str, str]] = None,
    before: Optional[str] = None,
    after: Optional[str] = None,
    objectives: Sequence[str] = ("nll", "p", "eaft", "cayley", "deft"),
    curve_objectives: Optional[Sequence[str]] = None,
    threshold: float = 0.01,
    max_points: int = 20000,
    results: Optional[Mapping] = None,
    results_title: str = "",
    reference: str = "nll",
    paired: Optional[dict] = None,
) -> dict:
    """Write the PNGs the inputs allow and ``out/index.html`` showing them, led by the results table.

    Args:
        out: output directory.
        runs: ``{label: run directory}`` with ``metrics.jsonl``.
        probes: ``{label: probe directory or token statistics file}``.
        before, after: two probes of the same records (both or neither).
        objectives: objectives of the gradient-landscape panels.
        curve_objectives: objectives of the theory curves (default: every objective that needs
            no reference, teacher or old policy).
        threshold: ``|Δp|`` above which a token counts as learned / forgotten (Figure 1).
        max_points: tokens drawn per scatter panel (sampled with a fixed seed).
        results: ``{method: results or {seed: results}}`` of a comparison: the page opens with its
            table (:func:`deft.analysis.tables.format_html`, the cells of the terminal table) titled
            ``results_title``, and the paired differences to ``reference`` when that method is a row.
        paired: the per-problem paired bootstrap table of the comparison
            (:func:`deft.analysis.paired.paired_differences`), shown after the results table.

    Returns:
        ``{"figures": [(file name, caption)], "notes": [...], "index": path, "learning": shares or None}``.
    All inputs are checked before anything is drawn; a missing one raises ``FileNotFoundError``.
    """
    from ..io import atomic_write_json, atomic_write_text
    from .curves import all_curves, plot_curves
    from .distribution import plot_distributions
    from .landscape import plot_landscape
    from .learning import plot_learning
    from .paired import format_paired_html
    from .tables import build_table, format_html
    from .token_stats import load_token_stats
    from .training_curves import plot_training_curves, read_metrics

    runs, probes = dict(runs or {}), dict(probes or {})
    if (before is None) != (after is None):
        raise ValueError("--before and --after go together: pass both (two probes of the same records)")
    for label, run in runs.items():
        read_metrics(run)  # raises for a missing metrics.jsonl
    probe_files = {label: resolve_probe(path) for label, path in probes.items()}
    pair = None if before is None else (resolve_probe(before)[0], resolve_probe(after)[0])
    # (the title heads the page)
    results_html = format_html(build_table(dict(results)), reference=reference) if results else ""
    results_html += format_paired_html(paired) if results else ""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str]] = []
    notes: list[str] = []
    sections: list[str] = []
    learning = None

    if results_html:
        sections.append("<h2>Results</h2>" + results_html)
    if runs:
        plot_training_curves(runs, out / "training_curves.png", title="Token statistics during training (Figure 5)")
        figures.append(("training_curves.png",
                        "Figure 5: mean focus index a and mean target probability p (with loss, entropy, gate and "
                        "the p < 1e-3 share) over optimizer steps, one line per run. In the paper the DEFT focus "
                        "starts near 0.65 model-strong and 0.05 model-weak and rises as training sharpens."))
    if probe_files:
        sets = {label: load_token_stats(files[0]) for label, files in probe_files.items()}
        summaries = {label: json.loads(files[1].read_text()) for label, files in probe_files.items() if files[1]}
        if summaries:
            sections.append("<h2>Probes</h2>" + _probe_table(summaries))
        _, skipped = plot_landscape(sets, out / "landscape.png", objectives, max_points=max_points)
        for label, sk in skipped.items():
            for spec, reason in sk.items():
                notes.append(f"landscape: {label}: {spec} skipped ({reason})")
        figures.append(("landscape.png",
                        "Figure 2: each response token placed by target probability p (x, log) and entropy (y), "
                        "coloured by the normalised learning signal W = s(p)(1-p) that each objective gives it. "
                        "NLL concentrates on the low-p tail, -p on medium/high p; DEFT and EAFT damp low-p, "
                        "low-entropy tokens (confident conflicts)."))
        plot_distributions(sets, out / "distribution.png")
        figures.append(("distribution.png",
                        "Figures 3, 4, 6: distribution of log10 p over the probed training-set tokens, one curve per "
                        "probe (e.g. the base model and the model after training with each objective)."))
    if pair is not None:
        b, a = load_token_stats(pair[0]), load_token_stats(pair[1])
        _, learning = plot_learning(b, a, out / "learning.png", threshold, labels=("before", "after"),
                                    max_points=max_points)
        atomic_write_json(out / "learning.json", learning, indent=1)
        figures.append(("learning.png",
                        f"Figure 1: per-token change in probability (ΔP) and loss (ΔL) from {before} to {after}; "
                        f"bars: shares of learned (ΔP > {threshold:g}) and forgotten (ΔP < -{threshold:g}) tokens, "
                        "split by confidence before (hatched: p >= 0.5)."))
    curves = all_curves(list(curve_objectives) if curve_objectives else None)
    plot_curves(curves, out / "curves.png")
    figures.append(("curves.png",
                    "Theory (Eq. 7): gate s(p) and learning signal W(p) = s(p)(1-p) of every objective, computed by "
                    "the objectives' own code on synthetic rows (dashed: all non-target mass on one token)."))

    body = "".join(sections) + ("<h2>Figures</h2>" if sections else "") + "".join(
        _img(out / name, cap) for name, cap in figures)
    if notes:
        body += "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
    heading = html.escape(f"deft report: {results_title}" if results_title else "deft report")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{heading}</title><style>{_STYLE}</style>"
            f"</head><body><h1>{heading}</h1>{body}</body></html>\n")
    index = atomic_write_text(out / "index.html", page)
    return {"figures": figures, "notes": notes, "index": str(index), "learning": learning}


def plot_report(cfg: PlotConfig, log=print) -> dict:
    """``deft plot``: :func:`build_report` of the inputs of ``cfg``, led by the results table of
    ``cfg.results`` (:func:`deft.analysis.tables.read_tables`); ``log`` gets the notes, the files
    written and the learning/forgetting shares. Returns :func:`build_report`'s result."""
    from .tables import read_tables

    table = (read_tables(cfg.results) if cfg.results
             else {"results": None, "title": "", "reference": "nll", "paired": None})
    result = build_report(cfg.out, runs=parse_labelled(cfg.runs), probes=parse_labelled(cfg.probes),
                          before=cfg.before, after=cfg.after, objectives=cfg.objectives,
                          curve_objectives=cfg.curve_objectives or None, threshold=cfg.threshold,
                          max_points=cfg.max_points, results=table["results"], results_title=table["title"],
                          reference=table["reference"], paired=table["paired"])
    for note in result["notes"]:
        log(f"note: {note}")
    names = ", ".join(name for name, _ in result["figures"])
    led = " (led by the results table)" if table["results"] else ""
    log(f"wrote {names} and index.html{led} to {cfg.out}")
    if result["learning"]:
        s = result["learning"]
        log(f"learning: {s['learned']:.1%} learned, {s['forgotten']:.1%} forgotten "
            f"(high confidence: {s['learned_high']:.1%} / {s['forgotten_high']:.1%})")
    return result
