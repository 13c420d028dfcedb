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
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

__all__ = ["t_quantile", "mean_interval", "paired_difference", "outside_noise", "t_two_sided_p",
           "paired_p_value", "holm"]

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
