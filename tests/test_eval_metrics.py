"""Average@k, Pass@k, Maj@k and standard errors on hand-made sample grids."""

import math

import pytest

from deft.eval import (
    average_at_k, average_row, majority_at_k, pass_at_k, stderr, summarize, summarize_scorers,
)

# 3 problems x 4 samples
GRID = [
    [1, 0, 1, 1],  # 0.75
    [0, 0, 0, 0],  # 0.0
    [0, 0, 1, 1],  # 0.5
]


def test_average_at_k_is_mean_of_per_problem_means():
    assert average_at_k(GRID) == pytest.approx((0.75 + 0.0 + 0.5) / 3)
    # not the accuracy of the first sample (1/3 here)
    assert average_at_k(GRID) != pytest.approx(sum(row[0] for row in GRID) / 3)


def test_greedy_k1_is_accuracy():
    grid = [[1], [0], [1], [1]]
    s = summarize(grid)
    assert s == {"n": 4, "k": 1, "average_at_k": 0.75, "stderr": pytest.approx(0.25)}


def test_stderr_over_problems():
    means = [0.75, 0.0, 0.5]
    m = sum(means) / 3
    expected = math.sqrt(sum((x - m) ** 2 for x in means) / 2 / 3)
    assert stderr(GRID) == pytest.approx(expected)
    assert stderr([[1, 0]]) == 0.0


def test_pass_at_k_unbiased_estimator():
    # k = n: fraction of problems with any correct sample
    assert pass_at_k(GRID) == pytest.approx(2 / 3)
    # k = 1: equals Average@k for binary scores
    assert pass_at_k(GRID, 1) == pytest.approx(average_at_k(GRID))
    # k = 2: 1 - C(n-c, 2)/C(n, 2): c=3 -> 1, c=0 -> 0, c=2 -> 1 - 1/6
    assert pass_at_k(GRID, 2) == pytest.approx((1 + 0 + 5 / 6) / 3)
    with pytest.raises(ValueError):
        pass_at_k(GRID, 5)


def test_pass_at_k_threshold_for_partial_scores():
    grid = [[0.9, 0.2], [1.0, 0.0]]
    assert pass_at_k(grid) == 0.5
    assert pass_at_k(grid, threshold=0.8) == 1.0


def test_majority_vote():
    scores = [[1, 0, 1, 0], [0, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]]
    answers = [
        ["\\frac{1}{2}", "3", "\\dfrac{1}{2}", "3"],  # tie 2-2: the first answer wins -> 1
        ["4", "4", "5", None],                           # "4" wins -> 0
        ["7", "8", None, "8 "],                          # "8" wins -> 1
        [None, None, None, None],                        # no answer -> 0
    ]
    assert majority_at_k(scores, answers) == pytest.approx(2 / 4)
    s = summarize(scores, answers)
    assert s["maj_at_k"] == pytest.approx(0.5)
    assert s["pass_at_k"] == pytest.approx(0.75)
    assert s["k"] == 4 and s["n"] == 4
    with pytest.raises(ValueError, match="shape"):
        majority_at_k(scores, answers[:2])


def test_summarize_rejects_bad_grids():
    with pytest.raises(ValueError, match="same number"):
        summarize([[1, 0], [1]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        summarize([[2.0]])
    with pytest.raises(ValueError):
        summarize([])


def test_summarize_scorers_figfont():
    exact = [[1, 0], [0, 0]]
    jw = [[1.0, 0.8], [0.5, 0.7]]
    s = summarize_scorers({"exact": exact, "jaro_winkler": jw})
    assert s["scorer"] == "exact"
    assert s["average_at_k"] == s["exact"] == pytest.approx(0.25)
    assert s["jaro_winkler"] == pytest.approx((0.9 + 0.6) / 2)
    assert s["jaro_winkler_stderr"] == pytest.approx(stderr(jw))


def test_average_row():
    a = {"n": 500, "k": 4, "average_at_k": 0.5, "stderr": 0.03, "pass_at_k": 0.7}
    b = {"n": 30, "k": 4, "average_at_k": 0.1, "stderr": 0.04, "pass_at_k": 0.3, "maj_at_k": 0.2}
    row = average_row({"math500": a, "aime24": b})
    assert row["average_at_k"] == pytest.approx(0.3)  # unweighted over benchmarks
    assert row["pass_at_k"] == pytest.approx(0.5)
    assert "maj_at_k" not in row  # not reported by every benchmark
    assert row["stderr"] == pytest.approx(math.sqrt(0.03**2 + 0.04**2) / 2)
    assert row["n"] == 530 and row["k"] == 4 and row["benchmarks"] == 2
    row2 = average_row({"a": a, "b": {**b, "k": 1}, "average": {"average_at_k": 1.0}})
    assert row2["k"] is None and row2["average_at_k"] == pytest.approx(0.3)
