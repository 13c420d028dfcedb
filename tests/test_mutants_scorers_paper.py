"""The paper's text and medical scorers (``--protocol paper``) at their borders.

Written to kill mutants of src/deft/eval/scorers_paper.py and scorers_paper_math.py that survived
``make mutate`` (docs/testing.md). Expected values come from the documented rules of the reference
evaluation (module docstrings) and hand computations in the comments.
"""

import pytest

from deft.eval import score
from deft.eval.scorers_paper import jaro_winkler_paper, match_choice_paper, score_mcq_paper

OPTS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}


def test_paper_scorers_take_answers_by_name_and_options_by_keyword_only():
    assert jaro_winkler_paper(prediction="ab", reference="ab") == 1.0
    assert score_mcq_paper(prediction="The answer is B", reference="B", options=OPTS) == 1.0
    with pytest.raises(TypeError):
        jaro_winkler_paper("ab", "ac", 0.2)
    with pytest.raises(TypeError):
        score_mcq_paper("The answer is B", "B", OPTS)


def test_jaro_counts_half_of_an_odd_number_of_transpositions():
    # "abcxyz" vs "bcaxyz": window 6 // 2 - 1 = 2, all 6 characters match; in order a,b,c vs b,c,a:
    # t = 3, so (m - t/2)/m = 4.5/6; jaro = (1 + 1 + 0.75) / 3 = 11/12; no common prefix -> no bonus
    assert jaro_winkler_paper("abcxyz", "bcaxyz") == pytest.approx(11 / 12)


def test_jaro_winkler_prefix_counts_at_most_four_characters():
    # "abcdex" vs "abcdey": 5 matches in place, m = 5, t = 0 -> jaro = (5/6 + 5/6 + 1) / 3 = 8/9;
    # common prefix 5, capped at 4: 8/9 + 4 * 0.1 * (1/9)
    assert jaro_winkler_paper("abcdex", "abcdey") == pytest.approx(8 / 9 + 0.4 / 9)


def test_nothing_generated_scores_zero():
    assert score("jaro_winkler_paper", None, "abc") == 0.0
    assert score("mcq_paper", None, "A", options=OPTS) == 0.0


def test_mcq_paper_needs_a_mapping_of_options():
    for bad in ({}, ["A", "B"]):
        with pytest.raises(ValueError, match="options"):
            score("mcq_paper", "The answer is A", "A", options=bad)


def test_mcq_paper_reads_only_the_last_final_response():
    # step 1: the text after the LAST "## Final Response\n\n" marker
    text = "## Final Response\n\nThe answer is A\n## Final Response\n\nThe answer is B"
    assert match_choice_paper(text, OPTS) == ("B", 1)
    # the thinking before the marker says "answer is A"; the final response names B on its own
    assert match_choice_paper("Thinking: the answer is A?\n\n## Final Response\n\nB.", OPTS) == ("B", 1)


def test_mcq_paper_takes_the_last_standalone_letter():
    assert match_choice_paper("B, then D.", OPTS) == ("D", 1)
