"""Tests of deft.analysis.intervals: means over seeds with 95% intervals (Student's t), and paired
differences between methods."""

import pytest

from deft.analysis.intervals import (
    holm,
    paired_bootstrap,
    mean_interval,
    outside_noise,
    paired_difference,
    paired_p_value,
    t_quantile,
    t_two_sided_p,
)
from deft.recipes.compare import parse_seeds


def test_intervals_on_fixed_numbers():
    assert t_quantile(1) == 12.706 and t_quantile(2) == 4.303
    assert t_quantile(60) == pytest.approx(2.000, abs=1e-3) and t_quantile(200) == pytest.approx(1.972, abs=1e-3)
    mean, half = mean_interval([1.0, 2.0, 3.0])  # s = 1, t_{0.975,2} = 4.303
    assert mean == 2.0 and half == pytest.approx(4.303 / 3 ** 0.5)
    assert mean_interval([5.0]) == (5.0, None)
    d = paired_difference({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0})  # differences 2, 3, 1
    assert d == (pytest.approx(2.0), pytest.approx(4.303 / 3 ** 0.5), 3)
    assert paired_difference({0: 3.0, 1: 5.0}, {None: 1.0})[0] == pytest.approx(3.0)  # a base measured once
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    with pytest.raises(ValueError):
        parse_seeds("0,0")


def _t_tail_by_quadrature(t: float, df: int, steps: int = 20000) -> float:
    """``P(|T| >= t)`` by Simpson's rule on the density over [0, t] (an independent check of the
    closed forms): ``1 - 2 ∫_0^t Γ((ν+1)/2) / (√(νπ) Γ(ν/2)) (1 + x²/ν)^(-(ν+1)/2) dx``."""
    import math

    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def f(x):
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    h = t / steps
    s = f(0) + f(t) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
    return 1 - 2 * s * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 11, 30])
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5, 7.0])
def test_t_p_value_matches_the_integral_of_the_density(t, df):
    assert t_two_sided_p(t, df) == pytest.approx(_t_tail_by_quadrature(t, df), abs=1e-9)
    assert t_two_sided_p(-t, df) == t_two_sided_p(t, df)


def test_t_p_value_on_hand_computed_values():
    import math

    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5)  # Cauchy: 1 - (2/π) atan(1)
    assert t_two_sided_p(2.0, 2) == pytest.approx(1 - 2 / math.sqrt(6))  # df 2: 1 - |t| / √(2 + t²)
    assert t_two_sided_p(float("inf"), 3) == 0.0
    for df in range(1, 31):  # the 95% quantiles of the table are where p = 0.05 (table rounded to 3 decimals)
        assert t_two_sided_p(t_quantile(df), df) == pytest.approx(0.05, abs=1e-4)
    with pytest.raises(ValueError):
        t_two_sided_p(1.0, 0)


def test_paired_p_value_agrees_with_the_interval():
    # differences 2, 3, 1: mean 2, s 1, t = 2 / (1/√3) = 2√3, df 2 -> p = 1 - 2√3 / √14
    a, b = {0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0}
    assert paired_p_value(a, b) == pytest.approx(1 - 2 * 3 ** 0.5 / 14 ** 0.5)
    assert (paired_p_value(a, b) < 0.05) == outside_noise(paired_difference(a, b))
    noisy = {0: 1.1, 1: 2.9, 2: 3.0}  # differences 0.1, 0.9, 0.0: inside the noise, and p says so too
    assert paired_p_value(noisy, b) > 0.05 and not outside_noise(paired_difference(noisy, b))
    assert paired_p_value({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0}) == 1.0  # all differences 0
    assert paired_p_value({0: 2.0, 1: 2.0}, {None: 1.0}) == 0.0  # identical non-zero differences
    assert paired_p_value({0: 2.0}, {0: 1.0}) is None  # one seed: no test


def test_holm_on_a_hand_computed_family():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    adjusted = holm([0.001, 0.012, 0.013, 0.2])
    assert [p < 0.05 for p in adjusted] == [True, True, True, False]  # Bonferroni (x4) keeps only the first
    assert [4 * p < 0.05 for p in [0.001, 0.012, 0.013, 0.2]] == [True, True, False, False]
    with pytest.raises(ValueError):
        holm([1.5])


def test_paired_bootstrap_identical_scores_give_no_difference():
    a = {f"p{i}": i % 2 for i in range(20)}
    d = paired_bootstrap(a, dict(a), n_resamples=500, seed=0)
    assert (d.mean, d.low, d.high, d.p, d.n) == (0.0, 0.0, 0.0, 1.0, 20)
    assert not d.excludes_zero()


def test_paired_bootstrap_constant_shift_excludes_zero():
    b = {f"p{i}": 0.25 * (i % 3) for i in range(30)}
    a = {k: v + 0.5 for k, v in b.items()}
    d = paired_bootstrap(a, b, n_resamples=999, seed=1)
    assert d.mean == pytest.approx(0.5) and d.low == pytest.approx(0.5) and d.high == pytest.approx(0.5)
    assert d.excludes_zero() and d.p == pytest.approx(2 / 1000)  # no resample at or below 0: 2 (0 + 1) / (B + 1)
    assert holm([d.p, 1.0]) == [pytest.approx(4 / 1000), 1.0]


def test_paired_bootstrap_hand_checkable_mixed_case_and_determinism():
    # differences: +1 on 3 problems, 0 on 1, -1 on 0: mean 0.75; every resample's mean is >= 0, some are 0
    a = {"w": 1, "x": 1, "y": 1, "z": 0}
    b = {"w": 0, "x": 0, "y": 0, "z": 0}
    d = paired_bootstrap(a, b, n_resamples=2000, seed=7)
    assert d.mean == 0.75 and 0.0 <= d.low <= 0.75 <= d.high == 1.0
    # P(a resample has only 'z') = (1/4)^4: about 8 of 2000 at 0, so p = 2 (8 + 1) / 2001 is small but not 2/2001
    assert 2 / 2001 < d.p < 0.05
    assert paired_bootstrap(a, b, n_resamples=2000, seed=7) == d
    assert paired_bootstrap(b, a, n_resamples=2000, seed=7).mean == -0.75
    # a noisy difference around 0: the interval covers 0 and p is large
    a = {i: i % 2 for i in range(40)}
    b = {i: (i // 2) % 2 for i in range(40)}
    d = paired_bootstrap(a, b, n_resamples=1000, seed=0)
    assert d.mean == 0.0 and d.low < 0.0 < d.high and d.p > 0.5


def test_paired_bootstrap_averages_seeds_per_problem_first():
    a = {"p1": [1.0, 0.0], "p2": [1.0, 1.0]}  # per-problem means 0.5 and 1.0
    b = {"p1": 0.5, "p2": [0.0]}
    d = paired_bootstrap(a, b, n_resamples=200, seed=0)
    assert d.mean == pytest.approx(0.5) and d.low == pytest.approx(0.0) and d.high == pytest.approx(1.0)


def test_paired_bootstrap_refuses_unequal_problem_sets_and_bad_scores():
    with pytest.raises(ValueError, match=r"same problems.*1 only in the first \(e.g. \['c'\]\), 0 only in the second"):
        paired_bootstrap({"a": 1, "c": 0}, {"a": 1})
    with pytest.raises(ValueError, match="no problems"):
        paired_bootstrap({}, {})
    with pytest.raises(ValueError, match=r"a\['x'\] must be a score"):
        paired_bootstrap({"x": None}, {"x": 1})
    with pytest.raises(ValueError, match="n_resamples must be >= 1"):
        paired_bootstrap({"x": 1}, {"x": 1}, n_resamples=0)
