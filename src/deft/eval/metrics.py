"""Metrics over a grid of scores ``scores[i][j]``: problem ``i``, sample ``j`` (``k`` samples each).

* Average@k — ``mean_i mean_j s_ij``: the mean over problems of the mean over the k samples. With
  k = 1 and greedy decoding it is greedy accuracy. (This is the paper's Average@16; the mean of the
  first sample only is a different, noisier number.)
* Pass@k — the fraction of problems with at least one correct sample (score >= ``threshold``).
  :func:`pass_at_k` gives the unbiased estimator for any k' <= k samples.
* Maj@k — the score of the majority answer among the k extracted answers.
* stderr — the standard error of Average@k over problems: ``std_i(mean_j s_ij, ddof=1) / sqrt(n)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

__all__ = ["average_at_k", "average_row", "majority_at_k", "pass_at_k", "stderr", "summarize",
           "summarize_scorers"]

Grid = Sequence[Sequence[float]]


def _check(scores: Grid) -> int:
    if len(scores) == 0:
        raise ValueError("no problems to summarise")
    ks = {len(row) for row in scores}
    if len(ks) != 1 or 0 in ks:
        raise ValueError(f"every problem needs the same number (>= 1) of samples; got {sorted(ks)}")
    for row in scores:
        for s in row:
            if not (0.0 <= float(s) <= 1.0):
                raise ValueError(f"scores must lie in [0, 1]; got {s}")
    return ks.pop()


def _row_means(scores: Grid) -> list[float]:
    return [math.fsum(map(float, row)) / len(row) for row in scores]


def average_at_k(scores: Grid) -> float:
    """Average@k = ``(1/n) Σ_i (1/k) Σ_j s_ij``."""
    _check(scores)
    means = _row_means(scores)
    return math.fsum(means) / len(means)


def stderr(scores: Grid) -> float:
    """Standard error of Average@k over problems: ``sqrt(Σ_i (m_i - m)^2 / (n - 1)) / sqrt(n)`` with
    ``m_i`` the mean of problem ``i``'s samples; 0.0 for a single problem."""
    _check(scores)
    means = _row_means(scores)
    n = len(means)
    if n < 2:
        return 0.0
    m = math.fsum(means) / n
    return math.sqrt(math.fsum((x - m) ** 2 for x in means) / (n - 1) / n)


def pass_at_k(scores: Grid, k: int | None = None, *, threshold: float = 1.0) -> float:
    """Pass@k with the unbiased estimator of Chen et al. (2021), averaged over problems.

    For a problem with ``n`` samples of which ``c`` are correct (score >= ``threshold``):
    ``pass@k = 1 - C(n - c, k) / C(n, k)``, computed as ``1 - Π_{i=n-c+1}^{n} (1 - k / i)``.
    ``k`` defaults to ``n`` (all samples), where it is the fraction of problems with any correct
    sample. Requires ``1 <= k <= n``.
    """
    n = _check(scores)
    k = n if k is None else k
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= {n} (samples per problem); got k={k}")
    total = 0.0
    for row in scores:
        c = sum(float(s) >= threshold for s in row)
        if n - c < k:
            total += 1.0
        else:
            total += 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
    return total / len(scores)


def _vote_key(answer: str | None) -> str | None:
    if answer is None:
        return None
    key = re.sub(r"\s+", "", str(answer)).strip("$").rstrip(".")
    key = re.sub(r"\\[dt]frac", r"\\frac", key)
    return key or None


def majority_at_k(scores: Grid, answers: Sequence[Sequence[str | None]], *,
                  answer_key: Callable[[str | None], str | None] | None = None) -> float:
    """Maj@k: for each problem, the answer given most often among its samples (compared after
    ``answer_key``, by default whitespace-, ``$``- and ``\\dfrac``-insensitive; ``None`` or empty
    answers do not vote; a tie goes to the answer that appeared first) and the mean score of the
    samples that gave it; 0 for a problem with no answer. Returns the mean over problems."""
    _check(scores)
    if len(answers) != len(scores) or any(len(a) != len(s) for a, s in zip(answers, scores)):
        raise ValueError("answers must have the same shape as scores")
    key_fn = answer_key or _vote_key
    total = 0.0
    for row, ans in zip(scores, answers):
        groups: dict[str, list[float]] = {}
        for s, a in zip(row, ans):
            key = key_fn(a)
            if key is not None:
                groups.setdefault(key, []).append(float(s))
        if groups:
            best = max(groups.values(), key=len)  # max keeps the first of equal counts
            total += math.fsum(best) / len(best)
    return total / len(scores)


def summarize(scores: Grid, answers: Sequence[Sequence[str | None]] | None = None, *,
              threshold: float = 1.0) -> dict:
    """Summary of one benchmark's score grid (problems x samples).

    Returns ``{"n", "k", "average_at_k", "stderr"}`` plus, when ``k > 1``, ``"pass_at_k"`` (fraction
    of problems with a sample scoring >= ``threshold``; the unbiased estimator at k = n) and, when
    ``answers`` (same shape, the extracted answers) are given, ``"maj_at_k"``. Scores are fractions
    in [0, 1], not percentages.
    """
    k = _check(scores)
    out: dict = {"n": len(scores), "k": k, "average_at_k": average_at_k(scores), "stderr": stderr(scores)}
    if k > 1:
        out["pass_at_k"] = pass_at_k(scores, threshold=threshold)
        if answers is not None:
            out["maj_at_k"] = majority_at_k(scores, answers)
    return out


def summarize_scorers(grids: Mapping[str, Grid], answers: Sequence[Sequence[str | None]] | None = None,
                      *, threshold: float = 1.0) -> dict:
    """Summary of a benchmark scored by several scorers (figfont: ``exact`` and ``jaro_winkler``).

    The first scorer is the primary one: its :func:`summarize` fills the top-level keys and
    ``"scorer"`` names it. Every scorer ``s`` adds ``s`` (its Average@k) and ``s + "_stderr"``.
    """
    if not grids:
        raise ValueError("no score grids given")
    names = list(grids)
    out = summarize(grids[names[0]], answers, threshold=threshold)
    out["scorer"] = names[0]
    for name in names:
        out[name] = average_at_k(grids[name])
        out[f"{name}_stderr"] = stderr(grids[name])
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def average_row(results: Mapping[str, Mapping]) -> dict:
    """The "Avg." row of a multi-benchmark table: the unweighted mean over benchmarks.

    ``results`` maps a benchmark name to its summary (:func:`summarize` / :func:`summarize_scorers`);
    entries named ``average`` or starting with ``_`` are skipped. Every numeric metric present in all
    benchmarks is averaged (``n``, ``k`` and standard errors excluded). A metric's standard error is
    combined as for a mean of independent estimates, ``sqrt(Σ_b se_b^2) / B``. Adds ``"n"`` (total
    problems), ``"benchmarks"`` (B) and ``"k"`` (common k, or ``None`` when they differ).
    """
    rows = {name: r for name, r in results.items() if name != "average" and not name.startswith("_")}
    if not rows:
        raise ValueError("no benchmark results to average")
    B = len(rows)
    common = set.intersection(*(set(r) for r in rows.values()))
    out: dict = {"benchmarks": B, "n": sum(int(r.get("n", 0)) for r in rows.values())}
    ks = {r.get("k") for r in rows.values()}
    out["k"] = ks.pop() if len(ks) == 1 else None
    for key in sorted(common):
        if key in ("n", "k", "benchmarks") or key.endswith("stderr"):
            continue
        vals = [r[key] for r in rows.values()]
        if all(_is_number(v) for v in vals):
            out[key] = math.fsum(vals) / B
    for key in sorted(common):
        if key.endswith("stderr"):
            vals = [r[key] for r in rows.values()]
            if all(_is_number(v) for v in vals):
                out[key] = math.sqrt(math.fsum(v * v for v in vals)) / B
    return out
