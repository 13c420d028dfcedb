"""Average@k, Pass@k, Maj@k, standard errors and the Avg. row at their borders, on hand-made grids.

Written to kill mutants of src/deft/eval/metrics.py that survived ``make mutate``
(docs/testing.md); every expected number is worked out by hand in the comments.
"""

import math

import pytest

from deft.eval.metrics import (
    average_at_k, average_row, majority_at_k, pass_at_k, stderr, summarize, summarize_scorers,
)


def test_scores_at_the_ends_of_the_unit_interval_are_valid():
    assert average_at_k([[0.0, 1.0], [1.0, 1.0]]) == pytest.approx((0.5 + 1.0) / 2)
    for bad in (-1e-9, 1.000001):
        with pytest.raises(ValueError, match=r"scores must lie in \[0, 1\]"):
            average_at_k([[0.5, bad]])


def test_grids_need_problems_and_samples_of_one_size():
    with pytest.raises(ValueError, match="no problems"):
        average_at_k([])
    with pytest.raises(ValueError, match=r"got \[0\]"):
        average_at_k([[], []])
    with pytest.raises(ValueError, match=r"got \[1, 2\]"):
        average_at_k([[1], [1, 0]])


def test_average_and_stderr_by_hand():
    grid = [[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]]
    # problem means 0.5, 1, 0, 0.5 -> mean 0.5; squared deviations 0, .25, .25, 0 -> var .5/3
    assert average_at_k(grid) == 0.5
    assert stderr(grid) == pytest.approx(math.sqrt(0.5 / 3 / 4))
    assert stderr([[1, 0, 1]]) == 0.0  # one problem: no spread to estimate
    assert stderr([[1], [0]]) == pytest.approx(0.5)  # means 1, 0: sqrt(0.5 / 1 / 2)


def test_pass_at_k_by_hand():
    grid = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]  # n = 4, c = 1, 2, 0
    # k = 1: c/n
    assert pass_at_k(grid, 1) == pytest.approx((1 / 4 + 2 / 4 + 0) / 3)
    # k = 2: 1 - C(n-c, 2)/C(4, 2) = 1 - 3/6, 1 - 1/6, 0
    assert pass_at_k(grid, 2) == pytest.approx((0.5 + 5 / 6 + 0) / 3)
    # k = 3: c = 1 -> 1 - C(3,3)/C(4,3) = 3/4; c = 2 -> n - c = 2 < 3 -> 1
    assert pass_at_k(grid, 3) == pytest.approx((0.75 + 1.0 + 0) / 3)
    assert pass_at_k(grid, 4) == pytest.approx(2 / 3)
    assert pass_at_k(grid) == pass_at_k(grid, 4)
    for bad in (0, 5):
        with pytest.raises(ValueError, match=r"1 <= k <= 4"):
            pass_at_k(grid, bad)


def test_pass_at_k_threshold_is_inclusive():
    grid = [[0.7, 0.2]]
    assert pass_at_k(grid, threshold=0.7) == 1.0
    assert pass_at_k(grid, threshold=0.7000001) == 0.0
    assert pass_at_k([[0.7, 0.2]], 1, threshold=0.2) == 1.0  # both samples count: c = n


def test_majority_takes_the_mean_score_of_the_winning_answer():
    scores = [[1.0, 0.5, 0.0, 0.25]]
    answers = [["x", "x", "y", "x"]]  # "x" wins with scores 1, 0.5, 0.25
    assert majority_at_k(scores, answers) == pytest.approx(1.75 / 3)


def test_majority_answer_normalisation():
    # each pair below is one answer written two ways
    for a, b in [("\\dfrac{1}{2}", "\\frac{1}{2}"), ("\\tfrac{1}{2}", "\\frac{1}{2}"), ("$5$", "5"),
                 ("5.", "5"), (" 1 2 ", "12"), ("x\n+ 1", "x+1")]:
        # b alone would lose to "z" (1 vs 2 votes) unless a and b are the same answer
        assert majority_at_k([[1, 1, 0, 0]], [[a, b, "z", "z"]]) == 1.0, (a, b)
    # different answers stay different: "z" wins 2 votes to 1 and scores 0
    assert majority_at_k([[1, 0, 0]], [["\\frac{1}{3}", "z", "z"]]) == 0.0


def test_empty_and_missing_answers_do_not_vote():
    scores = [[0, 1, 1, 0]]
    # "" and "$" normalise to nothing; None is no answer: only "7" votes (once)
    assert majority_at_k(scores, [["", "7", None, "$"]]) == 1.0
    assert majority_at_k([[1, 1]], [[None, ""]]) == 0.0


def test_majority_with_a_custom_key_and_the_first_of_a_tie():
    scores = [[1, 0, 0, 1]]
    answers = [["A", "b", "B", "a"]]
    assert majority_at_k(scores, answers) == 1.0  # four answers with one vote each: the first ("A") wins
    assert majority_at_k([[0, 1, 0]], [["b", "a", "b"]]) == 0.0  # two votes beat one, though "a" scores
    # default key: "A" (samples 1, 4) beats "a" and "b" -> mean 1; lower-cased: "a" (0, 1, 4) -> 2/3
    scores, answers = [[0, 1, 0, 0, 1]], [["a", "A", "b", "b", "A"]]
    assert majority_at_k(scores, answers) == 1.0
    assert majority_at_k(scores, answers, answer_key=str.lower) == pytest.approx(2 / 3)


def test_summarize_keys_depend_on_k_and_answers():
    assert set(summarize([[1], [0]])) == {"n", "k", "average_at_k", "stderr"}
    assert set(summarize([[1], [0]], [["1"], ["2"]])) == {"n", "k", "average_at_k", "stderr"}
    two = summarize([[1, 0], [0, 0]])
    assert set(two) == {"n", "k", "average_at_k", "stderr", "pass_at_k"}
    assert two["pass_at_k"] == 0.5 and two["k"] == 2 and two["n"] == 2
    with_answers = summarize([[1, 0], [0, 0]], [["a", "a"], ["b", None]])
    assert with_answers["maj_at_k"] == pytest.approx((0.5 + 0.0) / 2)
    assert summarize([[0.6, 0.1]], threshold=0.5)["pass_at_k"] == 1.0


def test_summarize_scorers_needs_grids_and_passes_answers_and_threshold():
    with pytest.raises(ValueError, match="no score grids"):
        summarize_scorers({})
    s = summarize_scorers({"jw": [[0.9, 0.4]], "exact": [[0, 0]]}, [["a", "b"]], threshold=0.8)
    assert s["scorer"] == "jw" and s["pass_at_k"] == 1.0 and s["maj_at_k"] == pytest.approx(0.9)
    assert s["exact"] == 0.0 and s["exact_stderr"] == 0.0 and s["jw"] == pytest.approx(0.65)


def test_average_row_skips_private_entries_and_non_numbers():
    a = {"n": 10, "k": 2, "average_at_k": 0.2, "stderr": 0.3, "scorer": "exact", "flag": True,
         "nan": float("nan"), "x_stderr": 0.4}
    b = {"n": 5, "k": 2, "average_at_k": 0.6, "stderr": 0.4, "scorer": "exact", "flag": False,
         "nan": 1.0, "x_stderr": float("inf")}
    row = average_row({"a": a, "b": b, "_meta": {"average_at_k": 9.0}, "average": {"average_at_k": 9.0}})
    assert row["benchmarks"] == 2 and row["n"] == 15 and row["k"] == 2
    assert row["average_at_k"] == pytest.approx(0.4)
    assert row["stderr"] == pytest.approx(math.sqrt(0.09 + 0.16) / 2)  # 0.25
    for key in ("scorer", "flag", "nan", "x_stderr"):
        assert key not in row, key
    with pytest.raises(ValueError, match="no benchmark results"):
        average_row({"average": a, "_x": b})
    one = average_row({"a": {"n": 3, "average_at_k": 0.5, "benchmarks": 7}})
    assert one == {"benchmarks": 1, "n": 3, "k": None, "average_at_k": 0.5}


def test_pass_at_k_takes_the_threshold_by_keyword_only():
    with pytest.raises(TypeError):
        pass_at_k([[1, 0]], 1, 0.5)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        majority_at_k([[1]], [["a"]], str.lower)
    with pytest.raises(TypeError):
        summarize([[1, 0]], None, 0.5)
    with pytest.raises(TypeError):
        summarize_scorers({"exact": [[1, 0]]}, None, 0.5)


def test_default_threshold_is_a_full_score():
    grid = [[0.9, 0.99]]
    assert pass_at_k(grid) == 0.0
    assert summarize(grid)["pass_at_k"] == 0.0
    assert summarize_scorers({"jw": grid})["pass_at_k"] == 0.0
    assert summarize([[1.0, 0.0]])["pass_at_k"] == 1.0


def test_answers_must_match_the_grid_shape():
    scores = [[1, 0], [0, 1]]
    for answers in ([["a", "b"]], [["a", "b"], ["a", "b"], ["c", "d"]], [["a", "b"], ["a"]],
                    [["a", "b"], ["a", "b", "c"]]):
        with pytest.raises(ValueError, match="same shape"):
            majority_at_k(scores, answers)


def test_average_row_counts_problems_of_benchmarks_that_report_them():
    row = average_row({"a": {"n": 4, "average_at_k": 0.5}, "b": {"average_at_k": 0.25}})
    assert row["n"] == 4 and row["average_at_k"] == pytest.approx(0.375) and row["k"] is None


def test_summarize_scorers_default_threshold_counts_a_full_score():
    assert summarize_scorers({"exact": [[1.0, 0.0]]})["pass_at_k"] == 1.0
    assert summarize_scorers({"exact": [[0.999, 0.0]]})["pass_at_k"] == 0.0
