"""Scorers: ``score(scorer, prediction, reference, **context) -> float in [0, 1]``.

==========================  ========================================================================
``math``                    final answer (:func:`~deft.eval.extract.extract_math_answer`) equivalent
                            to the reference (:func:`~deft.eval.scorers_math.math_equal`: plain
                            numbers numerically, everything else with ``math-verify``); 1 or 0
``mcq``                     the one option letter chosen (:func:`~deft.eval.extract.extract_choice`)
                            equals the gold letter; several letters named is wrong; 1 or 0
``exact``                   ``prediction.strip().lower() == reference.strip().lower()``; 1 or 0
``jaro_winkler``            Jaro-Winkler similarity of the lower-cased, stripped strings
                            (``rapidfuzz``, prefix weight 0.1, bonus above 0.7); in [0, 1]
``rg:<task>``               the reasoning-gym task's own ``score_answer`` on the last
                            ``<answer>...</answer>`` of the prediction (the whole stripped prediction
                            when there is no tag)
``exact_paper``             the paper's reference code, ``--protocol paper``
``exact_normalized_paper``  (:mod:`.scorers_paper`): raw equality, lower-cased equality (not
``jaro_winkler_paper``      stripped), Jaro-Winkler with the prefix bonus always added, the m1
``mcq_paper``               medical matcher (always picks an option; needs ``options``)
``math_paper``              the Qwen2.5-Math harness (:mod:`.scorers_paper_math`)
==========================  ========================================================================

``context`` carries what a problem knows besides its reference: ``options`` (``{letter: text}``,
``mcq``/``mcq_paper``), ``data_name`` (``math_paper``), ``entry`` (``rg:<task>``), ``letters``
(``mcq``), ``timeout``/``rel_tol`` (``math``). Context a scorer does not use is ignored; an unknown
keyword is an error.

Model output is never executed. reasoning-gym tasks whose scoring evaluates the answer text with
Python ``eval`` or sympy's ``parse_expr`` (``countdown``, ``puzzle24``, ``n_queens``, ...) only see
answers that pass a token screen (:func:`is_inert_expression`) or that equal the reference text;
anything else scores 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .extract import DEFAULT_LETTERS, extract_choice, extract_math_answer, extract_tagged
from .scorers_math import math_equal, parse_number, score_math
from .scorers_paper import (
    exact_normalized_paper, exact_paper, jaro_winkler_paper, match_choice_paper, score_mcq_paper,
)
from .scorers_paper_math import extract_answer_paper, score_math_paper
from .scorers_text import exact_match, is_inert_expression, jaro_winkler, score_mcq, score_rg

__all__ = [
    "PAPER_SCORERS", "SCORERS", "check_scorer", "exact_match", "extracted_answer", "is_inert_expression",
    "jaro_winkler", "math_equal", "parse_number", "score", "score_math", "score_mcq", "score_rg",
]

PAPER_SCORERS = ("exact_paper", "exact_normalized_paper", "jaro_winkler_paper", "math_paper", "mcq_paper")
SCORERS = ("math", "mcq", "exact", "jaro_winkler", "rg:<task>", *PAPER_SCORERS)


def _mcq(prediction: str | None, reference: str, *, letters: str | None = None,
         options: Mapping[str, str] | None = None) -> float:
    if letters is None:
        letters = "".join(options) if options else DEFAULT_LETTERS
    return score_mcq(prediction, reference, letters=letters)


_SCORERS: dict[str, Callable[..., float]] = {
    "math": score_math,
    "mcq": _mcq,
    "exact": exact_match,
    "jaro_winkler": jaro_winkler,
    "exact_paper": exact_paper,
    "exact_normalized_paper": exact_normalized_paper,
    "jaro_winkler_paper": jaro_winkler_paper,
    "math_paper": score_math_paper,
    "mcq_paper": score_mcq_paper,
}
# keywords each scorer takes; other known context keys are dropped for it
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "math": ("timeout", "rel_tol"), "mcq": ("letters", "options"), "math_paper": ("data_name",),
    "mcq_paper": ("options",), "rg": ("entry",),
}
_CONTEXT = frozenset(k for ks in _KEYWORDS.values() for k in ks)


def _keywords(scorer: str, context: dict) -> dict:
    unknown = sorted(set(context) - _CONTEXT)
    if unknown:
        raise ValueError(f"unknown scorer context {unknown}; known: {', '.join(sorted(_CONTEXT))}")
    wanted = _KEYWORDS.get("rg" if scorer.startswith("rg:") else scorer, ())
    return {k: v for k, v in context.items() if k in wanted}


def extracted_answer(scorer: str, prediction: str | None, **context: Any) -> str | None:
    """The answer a scorer reads from ``prediction`` (for majority voting and reports): the math
    answer, the option letter, the stripped lower-cased text (``exact``, ``jaro_winkler``), the raw
    text (figfont paper scorers) or the ``<answer>`` content (``rg:<task>``); ``None`` when there is
    none."""
    if prediction is None:
        return None
    if scorer == "math":
        return extract_math_answer(prediction)
    if scorer == "math_paper":
        return extract_answer_paper(prediction, context.get("data_name") or "math") or None
    if scorer == "mcq":
        options = context.get("options")
        return extract_choice(prediction, context.get("letters") or ("".join(options) if options else DEFAULT_LETTERS))
    if scorer == "mcq_paper":
        return match_choice_paper(prediction, context["options"])[0] if context.get("options") else None
    if scorer in ("exact", "jaro_winkler"):
        return prediction.strip().lower() or None
    if scorer in ("exact_paper", "exact_normalized_paper", "jaro_winkler_paper"):
        return prediction or None
    check_scorer(scorer)
    tagged = extract_tagged(prediction, "answer")
    return tagged if tagged is not None else (prediction.strip() or None)


def check_scorer(name: str) -> str:
    """Return ``name`` when it is a valid scorer name, else raise ``ValueError`` listing the valid
    ones (for ``rg:<task>``, the task must be a reasoning-gym dataset)."""
    if name in _SCORERS:
        return name
    if name.startswith("rg:") and len(name) > 3:
        from reasoning_gym.factory import DATASETS

        if name[3:] in DATASETS:
            return name
        raise ValueError(f"unknown reasoning-gym task {name[3:]!r} in scorer {name!r}; "
                         f"valid tasks: {', '.join(sorted(DATASETS))}")
    raise ValueError(f"unknown scorer {name!r}; valid scorers: {', '.join(SCORERS)} "
                     "(<task> is a reasoning-gym dataset name, e.g. rg:countdown)")


def score(scorer: str, prediction: str | None, reference: Any, **context: Any) -> float:
    """Score one prediction against its reference with a named scorer; returns a float in [0, 1].

    ``scorer`` is one of :data:`SCORERS` (see the module docstring); ``context`` holds what the
    problem knows besides the reference (``options``, ``data_name``, ``entry``, ...). A ``None``
    prediction (nothing generated) scores 0. Raises ``ValueError`` for an unknown scorer.
    """
    kw = _keywords(scorer, context)
    fn = _SCORERS.get(scorer)
    if fn is not None:
        return float(fn(prediction, reference, **kw))
    check_scorer(scorer)
    return score_rg(scorer[3:], prediction, reference, **kw)
