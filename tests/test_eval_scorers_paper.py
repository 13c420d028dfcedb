"""The paper's scorers (``--protocol paper``) against values produced by the reference code's own
functions (see tests/data/eval/README.md for how the case files were made), and the widened ``mcq``."""

import pytest

from deft.eval import score
from deft.eval.scorers import PAPER_SCORERS, SCORERS, extracted_answer
from deft.eval.scorers_paper import match_choice_paper

from eval_scorers_paper_helpers import cases


def test_case_files_have_30_cases_each():
    for name in ("math", "text", "mcq"):
        assert len(cases(name)) >= 30, name
    assert set(PAPER_SCORERS) <= set(SCORERS)


@pytest.mark.parametrize("case", cases("text"), ids=lambda c: f"{c['prediction']!r}-{c['reference']!r}")
def test_figfont_paper_scorers_match_the_reference(case):
    for name in ("exact_paper", "exact_normalized_paper", "jaro_winkler_paper"):
        assert score(name, case["prediction"], case["reference"]) == pytest.approx(case[name], abs=1e-12), name


def test_jaro_winkler_paper_always_adds_the_prefix_bonus():
    # jaro("abc", "abx") = (2/3 + 2/3 + 1) / 3 = 7/9; prefix 2: 7/9 + 2 * 0.1 * (2/9) = 0.8222...
    assert score("jaro_winkler_paper", "ABC ", "abx") == pytest.approx(7 / 9 + 0.2 * 2 / 9)
    # below 0.7 the textbook (and rapidfuzz) bonus is withheld; the paper's is not:
    # jaro("ab", "ac") = (1/2 + 1/2 + 1) / 3 = 2/3; + 1 * 0.1 * 1/3
    assert score("jaro_winkler_paper", "ab", "ac") == pytest.approx(2 / 3 + 0.1 / 3)
    assert score("jaro_winkler", "ab", "ac") == pytest.approx(2 / 3)
    assert score("exact_paper", " Hello", "Hello") == 0.0 and score("exact", " Hello", "Hello") == 1.0


@pytest.mark.parametrize("case", cases("mcq"), ids=lambda c: repr(c["prediction"][:40]))
def test_mcq_paper_matches_the_reference(case):
    assert match_choice_paper(case["prediction"], case["options"]) == (case["choice"], case["kind"])
    assert score("mcq_paper", case["prediction"], case["reference"], options=case["options"]) == case["score"]


def test_mcq_paper_needs_options_and_always_picks_one():
    with pytest.raises(ValueError, match="options"):
        score("mcq_paper", "The answer is A", "A")
    opts = {"A": "alpha", "B": "beta"}
    assert extracted_answer("mcq_paper", "nothing that matches", options=opts) in opts
    assert extracted_answer("mcq", "nothing that matches", options=opts) is None


def test_context_keys():
    assert score("exact", "a", "a", options={"A": "x"}, data_name="math", entry=None) == 1.0
    with pytest.raises(ValueError, match="unknown scorer context"):
        score("exact", "a", "a", option={"A": "x"})
