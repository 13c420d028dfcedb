"""Tests of deft.analysis.intervals: means over seeds with 95% intervals (Student's t), and paired
differences between methods."""

import pytest

from deft.analysis.intervals import mean_interval, paired_difference, t_quantile
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
