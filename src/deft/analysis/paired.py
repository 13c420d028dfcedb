"""Per-problem paired differences between methods evaluated on the same problems.

A comparison's table (:mod:`deft.analysis.tables`) gives each method's accuracy per seed and the
t-interval of its difference to a reference over seeds: that interval covers data-order noise only,
not which problems the benchmark happened to draw. Here every method is read **per problem** from
the ``generations.jsonl`` of its ``deft eval`` folders (:mod:`deft.eval.outdir`): a problem's score
is the mean over its ``k`` samples of the benchmark's primary scorer (``results.json``'s
``"scorer"``; its mean over problems is the table's Average@k, or EM for FigFont), averaged over
the method's seeds. Each method is compared with the reference by
:func:`deft.analysis.intervals.paired_bootstrap` (resampling problems), and the p-values of every
(method, benchmark) comparison are corrected together by :func:`deft.analysis.intervals.holm`.

Input: ``{method: {seed: eval folder}}`` (seed ``None`` for a method run once). Output of
:func:`paired_differences`: ``{"reference", "n_resamples", "seed", "unit": "fraction", "rows":
{method: {benchmark: {"scorer", "mean", "low", "high", "p", "p_holm", "n", "seeds"}}}}`` (differences
``method - reference`` as fractions in [-1, 1]; :func:`format_paired` shows percentage points).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional

from .intervals import holm, paired_bootstrap

__all__ = ["problem_scores", "paired_differences", "format_paired", "format_paired_html"]


def _primary_scorers(folder: Path) -> dict:
    """``{benchmark: primary scorer}`` from ``results.json`` (empty when it is absent)."""
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {b: r["scorer"] for b, r in results.items() if isinstance(r, dict) and isinstance(r.get("scorer"), str)}


def problem_scores(folder, *, every_scorer: bool = False) -> dict[str, dict[str, float]]:
    """``{benchmark: {problem id: score}}`` of one ``deft eval`` folder: each problem's mean over its
    samples of the benchmark's primary scorer (``results.json``; the first scorer of a sample
    otherwise). With ``every_scorer``, each further scorer every sample of a benchmark carries adds
    ``"<benchmark> <scorer>"`` (FigFont: ``figfont`` is exact match, ``figfont jaro_winkler`` the
    similarity). Raises a one-line ``FileNotFoundError`` / ``ValueError`` naming the file (and line)."""
    folder = Path(folder)
    path = folder / "generations.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-sample scores here (written by 'deft eval --out'); "
                                "evaluate the model into this folder first")
    primary = _primary_scorers(folder)
    samples: dict = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                bench, scores = str(rec["benchmark"]), rec["scores"]
                scorer = primary.get(bench) or next(iter(scores))
                row = {bench: float(scores[scorer])}
                if every_scorer:
                    row.update({f"{bench} {name}": float(v) for name, v in scores.items() if name != scorer})
                samples[(bench, str(rec["id"]), int(rec["sample"]))] = row
            except (ValueError, KeyError, TypeError, StopIteration) as err:
                raise ValueError(f"{path}:{lineno}: not a scored sample ({type(err).__name__}: {err}); re-run the "
                                 "evaluation into this folder (--resume keeps its finished samples)") from None
    by_problem: dict = {}
    carried: dict = {}  # column -> (its benchmark, samples that carry it)
    for (bench, pid, _), row in samples.items():
        for column, score in row.items():
            by_problem.setdefault(column, {}).setdefault(pid, []).append(score)
            carried[column] = (bench, carried.get(column, (bench, 0))[1] + 1)
    # a further scorer is compared only where every sample of its benchmark carries it
    return {c: {pid: sum(v) / len(v) for pid, v in probs.items()} for c, probs in by_problem.items()
            if carried[c][1] == carried[carried[c][0]][1]}


def _method_scores(folders: Mapping, every_scorer: bool = False) -> dict[str, dict[str, list[float]]]:
    """``{benchmark: {problem id: [score per seed]}}`` of one method's evaluation folders."""
    out: dict = {}
    for folder in folders.values():
        for bench, probs in problem_scores(folder, every_scorer=every_scorer).items():
            for pid, score in probs.items():
                out.setdefault(bench, {}).setdefault(pid, []).append(score)
    return out


def paired_differences(folders: Mapping[str, Mapping], reference: str = "nll", *, n_resamples: int = 10000,
                       seed: int = 0, every_scorer: bool = True) -> Optional[dict]:
    """Each method's per-problem paired bootstrap difference to ``reference`` on every benchmark both
    were scored on (see the module docstring), and with ``every_scorer`` on each further scorer of a
    benchmark (:func:`problem_scores`; FigFont's Jaro-Winkler beside its exact match, which is 0
    everywhere for a small model); the base model (``"Base"``) is not compared. ``None``
    when ``reference`` is absent or no other method is there. A benchmark whose problems differ
    between the two methods raises the bootstrap's ``ValueError`` (naming the benchmark)."""
    if reference not in folders:
        return None
    others = [m for m in folders if m != reference and str(m).lower() != "base"]
    if not others:
        return None
    ref = _method_scores(folders[reference], every_scorer)
    scorers = {}
    for folder in folders[reference].values():
        scorers.update(_primary_scorers(Path(folder)))
    for column in ref:
        if column not in scorers and " " in column:  # "<benchmark> <scorer>": a further scorer
            scorers[column] = column.rsplit(" ", 1)[1]
    rows: dict = {}
    cells = []
    for method in others:
        scores = _method_scores(folders[method], every_scorer)
        for bench in [b for b in ref if b in scores]:
            try:
                d = paired_bootstrap(scores[bench], ref[bench], n_resamples=n_resamples, seed=seed)
            except ValueError as err:
                raise ValueError(f"{bench}, {method} vs {reference}: {err}") from None
            row = {"scorer": scorers.get(bench), "mean": d.mean, "low": d.low, "high": d.high, "p": d.p, "n": d.n,
                   "seeds": len(folders[method])}
            rows.setdefault(method, {})[bench] = row
            cells.append(row)
    for row, adjusted in zip(cells, holm([c["p"] for c in cells])):
        row["p_holm"] = adjusted
    return {"reference": reference, "n_resamples": n_resamples, "seed": seed, "unit": "fraction", "rows": rows}


def _paired_rows(paired: dict) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """``(benchmarks, [(method, cell texts)])`` of :func:`paired_differences`, the cells of both
    renderings."""
    benches: list = []
    for cells in paired["rows"].values():
        benches += [b for b in cells if b not in benches]
    rows = []
    for method, cells in paired["rows"].items():
        texts = []
        for b in benches:
            c = cells.get(b)
            if c is None:
                texts.append("-")
                continue
            star = "*" if c["low"] > 0 or c["high"] < 0 else ""
            texts.append(f"{100 * c['mean']:+.2f} [{100 * c['low']:+.2f}, {100 * c['high']:+.2f}]{star} "
                         f"p={c['p_holm']:.3g} ({c['scorer'] or 'score'}, n={c['n']}, seeds={c['seeds']})")
        rows.append((method, texts))
    return benches, rows


def _paired_caption(paired: dict, code) -> str:
    ref = paired["reference"]
    return (f"Paired per problem (bootstrap) difference to {code(ref)} (method - {ref}), percentage points: mean "
            f"[95% percentile interval] over problems ({paired['n_resamples']} resamples of the problems; a "
            "problem's score is its primary scorer's mean over samples, averaged over seeds); p: two-sided "
            "bootstrap p-value, Holm-adjusted over this table; * = interval excludes 0.")


def format_paired(paired: Optional[dict]) -> str:
    """Markdown table of :func:`paired_differences`: per method and benchmark, the mean difference in
    percentage points, its percentile 95% interval and the Holm-adjusted p-value; ``*`` where the
    interval excludes 0. Empty for ``None`` or no rows."""
    if not paired or not paired["rows"]:
        return ""
    benches, rows = _paired_rows(paired)
    lines = [_paired_caption(paired, lambda r: f"`{r}`"), "",
             "| Method | " + " | ".join(b for b in benches) + " |", "|---|" + "---:|" * len(benches)]
    lines += [f"| {method} | " + " | ".join(texts) + " |" for method, texts in rows]
    return "\n".join(lines) + "\n"


def format_paired_html(paired: Optional[dict]) -> str:
    """The table of :func:`format_paired` as HTML (``<table class="paired">``, the same cells, every
    text escaped), after its caption; empty for ``None`` or no rows."""
    import html

    if not paired or not paired.get("rows"):
        return ""
    esc = html.escape
    benches, rows = _paired_rows(paired)
    parts = [f'<p>{esc(_paired_caption(paired, str))}</p><table class="paired"><thead><tr><th>Method</th>'
             + "".join(f"<th>{esc(b)}</th>" for b in benches) + "</tr></thead><tbody>"]
    parts += [f'<tr><th scope="row">{esc(m)}</th>' + "".join(f"<td>{esc(t)}</td>" for t in texts) + "</tr>"
              for m, texts in rows]
    return "".join(parts) + "</tbody></table>"
