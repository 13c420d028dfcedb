"""Means over seeds with 95% intervals (Student's t), and paired differences between methods.

For values ``x_1..x_n`` (one per seed) the interval is ``mean ± t_{0.975, n-1} · s / √n`` with
``s`` the sample standard deviation (``n - 1`` in the denominator). A paired difference of two
methods uses the per-seed differences ``d_s = x_s - y_s`` over the seeds both have (a method
measured once, such as the base model, is the same number for every seed). A difference is
"outside the noise" when its interval excludes 0; with one seed there is no interval.

Several comparisons at once (every objective x metric against one reference) need a correction
for their number: :func:`paired_p_value` gives the paired t-test's two-sided p-value of one
difference (``t = d̄ / (s_d / √n)`` with ``n - 1`` degrees of freedom; ``p < 0.05`` exactly when
the 95% interval above excludes 0), and :func:`holm` the Holm-Bonferroni adjusted p-values of a
family (Holm 1979, "A simple sequentially rejective multiple test procedure"): a comparison whose
adjusted p-value is below 0.05 is outside the noise with a family-wise error rate of 5%.

Seeds measure data-order noise only. Two methods scored on the same problems are compared **per
problem** by :func:`paired_bootstrap` (resampling problems, the larger source of noise on a
benchmark of a few hundred problems): it gives the mean difference, a percentile 95% interval and
a two-sided p-value that :func:`holm` can correct like the t-test's.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

__all__ = ["t_quantile", "mean_interval", "paired_difference", "outside_noise", "t_two_sided_p",
           "paired_p_value", "holm", "BootstrapDifference", "paired_bootstrap"]

# t_{0.975, df} for df = 1..30 (two-sided 95%)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t_quantile(df: int) -> float:
    """Two-sided 95% quantile ``t_{0.975, df}`` of Student's t (table to 30 degrees of freedom,
    then the Cornish-Fisher expansion, within 1e-3 of the exact value)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_interval(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """``(mean, half-width of the 95% interval)``; the half-width is ``None`` for fewer than 2 values."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, t_quantile(n - 1) * math.sqrt(var / n)


def paired_difference(a: Mapping, b: Mapping) -> Optional[tuple[float, Optional[float], int]]:
    """``(mean, half-width, n)`` of ``a[s] - b[s]`` over the seeds ``s`` both have; a mapping with
    the single key ``None`` (a method measured once) pairs with every seed. ``None`` when no seed
    is shared."""
    if list(a) == [None]:
        a = {s: a[None] for s in b}
    if list(b) == [None]:
        b = {s: b[None] for s in a}
    seeds = [s for s in a if s in b and a[s] is not None and b[s] is not None]
    if not seeds:
        return None
    mean, half = mean_interval([a[s] - b[s] for s in seeds])
    return mean, half, len(seeds)


def outside_noise(diff: Optional[tuple[float, Optional[float], int]]) -> bool:
    """Whether a paired difference's 95% interval excludes 0 (False without an interval)."""
    return diff is not None and diff[1] is not None and abs(diff[0]) > diff[1]


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value ``P(|T| >= |t|)`` of Student's t with an integer number of degrees of freedom.

    Exact closed forms (Abramowitz & Stegun 26.7.3-26.7.4) of ``A = P(|T| < |t|)``, with
    ``θ = atan(|t| / √df)``, ``c = cos θ``: for odd ``df``,
    ``A = (2/π)(θ + sin θ (c + (2/3)c³ + (2·4)/(3·5)c⁵ + ... + (2·4···(df-3))/(3·5···(df-2)) c^(df-2)))``
    (``A = 2θ/π`` for ``df = 1``); for even ``df``,
    ``A = sin θ (1 + (1/2)c² + (1·3)/(2·4)c⁴ + ... + (1·3···(df-3))/(2·4···(df-2)) c^(df-2))``.
    The p-value is ``1 - A``; for ``df = 2`` it is ``1 - |t| / √(2 + t²)``.
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        term, series = math.cos(theta), 0.0
        for k in range(1, (df - 1) // 2 + 1):  # terms c, (2/3)c³, ...: each is the last x (2k-2)/(2k-1) c²
            if k > 1:
                term *= c2 * (2 * k - 2) / (2 * k - 1)
            series += term
        inside = (2 / math.pi) * (theta + math.sin(theta) * series)
    else:
        term, series = 1.0, 0.0
        for k in range(1, df // 2 + 1):  # terms 1, (1/2)c², (1·3)/(2·4)c⁴, ...
            if k > 1:
                term *= c2 * (2 * k - 3) / (2 * k - 2)
            series += term
        inside = math.sin(theta) * series
    return min(1.0, max(0.0, 1.0 - inside))


def paired_p_value(a: Mapping, b: Mapping) -> Optional[float]:
    """Two-sided p-value of the paired t-test of ``a[s] - b[s]`` over the seeds both have (pairing
    as :func:`paired_difference`): ``t = d̄ / (s_d / √n)``, ``n - 1`` degrees of freedom
    (:func:`t_two_sided_p`). Identical differences (``s_d = 0``) give 1 when they are all 0 and 0
    otherwise. ``None`` with fewer than 2 shared seeds (no test)."""
    if list(a) == [None]:
        a = {s: a[None] for s in b}
    if list(b) == [None]:
        b = {s: b[None] for s in a}
    d = [a[s] - b[s] for s in a if s in b and a[s] is not None and b[s] is not None]
    n = len(d)
    if n < 2:
        return None
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return t_two_sided_p(mean / (sd / math.sqrt(n)), n - 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values of one family of ``m`` comparisons, in the input order.

    With the p-values sorted ascending ``p_(1) <= ... <= p_(m)``, the adjusted value of the
    ``i``-th is ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting every comparison whose
    adjusted value is below ``α`` keeps the family-wise error rate at most ``α`` (Holm 1979), and
    never rejects fewer than Bonferroni (``m p < α``)."""
    m = len(p_values)
    for p in p_values:
        if not (0.0 <= p <= 1.0):
            raise ValueError(f"a p-value must be in [0, 1], got {p}")
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))  # step-down: never below an earlier one
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class BootstrapDifference:
    """A per-problem paired difference ``a - b``: ``mean`` (the mean of the per-problem differences),
    the percentile 95% interval ``[low, high]``, the two-sided bootstrap ``p`` value, ``n`` problems
    and ``n_resamples`` bootstrap resamples."""

    mean: float
    low: float
    high: float
    p: float
    n: int
    n_resamples: int

    def excludes_zero(self) -> bool:
        """Whether the 95% interval lies entirely on one side of 0."""
        return self.low > 0.0 or self.high < 0.0


def _problem_score(value, method: str, problem) -> float:
    """One problem's score: a number, or the mean of its per-seed scores (a sequence)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return sum(float(v) for v in value) / len(value)
    raise ValueError(f"paired_bootstrap: {method}[{problem!r}] must be a score or a non-empty list of per-seed "
                     f"scores, got {value!r}")


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, linear between order statistics (position ``q (B - 1)``)."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def paired_bootstrap(a: Mapping, b: Mapping, *, n_resamples: int = 10000, seed: int = 0) -> BootstrapDifference:
    """Paired bootstrap over problems of the difference between two methods scored on the same problems.

    ``a`` and ``b`` map a problem id to that method's score on it (e.g. the fraction of its ``k``
    samples that are correct), or to a list of scores, one per training seed: the per-problem score
    is then **averaged over seeds first**, so the problem is the unit that is resampled and the seed
    noise is folded into each problem's score (the seeds' order need not match; a list of one value is
    one seed). Both must hold the same problem ids (otherwise a ``ValueError`` names the ids that only
    one has).

    With ``d_i = a_i - b_i`` for the ``n`` problems, the difference is ``d̄ = (1/n) Σ_i d_i``. Each of
    ``B = n_resamples`` resamples draws ``n`` problems with replacement (``random.Random(seed)``,
    so a seed gives the same answer) and takes their mean difference ``d̄*_r``. The 95% interval is
    the 2.5th and 97.5th percentiles of the ``d̄*_r`` (Efron & Tibshirani 1993, "An Introduction to
    the Bootstrap", ch. 13), and the two-sided p-value inverts it:
    ``p = min(1, 2 · min(1 + #{d̄*_r <= 0}, 1 + #{d̄*_r >= 0}) / (B + 1))``: the smallest two-sided
    level at which the percentile interval would exclude 0, counted with the ``+1`` that keeps a
    Monte Carlo p-value above 0 (Davison & Hinkley 1997, eq. 4.11). Identical scores give ``d̄ = 0``,
    the interval ``[0, 0]`` and ``p = 1``; p-values of several comparisons go to :func:`holm`.
    """
    if n_resamples < 1:
        raise ValueError(f"paired_bootstrap: n_resamples must be >= 1, got {n_resamples}")
    only_a, only_b = [k for k in a if k not in b], [k for k in b if k not in a]
    if only_a or only_b:
        raise ValueError(f"paired_bootstrap needs the same problems in both methods: {len(only_a)} only in the "
                         f"first (e.g. {only_a[:3]}), {len(only_b)} only in the second (e.g. {only_b[:3]}); "
                         "score both methods on the same problems")
    if not a:
        raise ValueError("paired_bootstrap: no problems")
    diffs = [_problem_score(a[k], "a", k) - _problem_score(b[k], "b", k) for k in a]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(n_resamples))
    below = sum(m <= 0.0 for m in means)
    above = sum(m >= 0.0 for m in means)
    p = min(1.0, 2.0 * min(below + 1, above + 1) / (n_resamples + 1))
    return BootstrapDifference(sum(diffs) / n, _percentile(means, 0.025), _percentile(means, 0.975), p, n,
                               n_resamples)
