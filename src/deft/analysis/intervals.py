"""Means over seeds with 95% intervals (Student's t), and paired differences between methods.

For values ``x_1..x_n`` (one per seed) the interval is ``mean ± t_{0.975, n-1} · s / √n`` with
``s`` the sample standard deviation (``n - 1`` in the denominator). A paired difference of two
methods uses the per-seed differences ``d_s = x_s - y_s`` over the seeds both have (a method
measured once, such as the base model, is the same number for every seed). A difference is
"outside the noise" when its interval excludes 0; with one seed there is no interval.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

__all__ = ["t_quantile", "mean_interval", "paired_difference", "outside_noise"]

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
