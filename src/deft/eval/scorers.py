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
from dataclasses import dataclass
from typing import Any

from .extract import DEFAULT_LETTERS, extract_choice, extract_math_answer, extract_tagged
from .scorers_math import math_equal, parse_number, score_math
from .scorers_paper import (
    exact_normalized_paper, exact_paper, jaro_winkler_paper, match_choice_paper, score_mcq_paper,
)
from .scorers_paper_math import extract_answer_paper, score_math_paper
from .scorers_text import exact_match, is_inert_expression, jaro_winkler, score_mcq, score_rg

__all__ = [
    "PAPER_SCORERS", "SCORER_REGISTRY", "SCORERS", "Scorer", "check_scorer", "exact_match", "extracted_answer",
    "get_scorer", "is_inert_expression", "jaro_winkler", "list_scorers", "math_equal", "parse_number",
    "register_scorer", "report_columns", "score", "score_math", "score_mcq", "score_rg", "scorer_names",
    "unregister_scorer",
]


@dataclass(frozen=True)
class Scorer:
    """Everything about one scorer, declared once with :func:`register_scorer`.

    ``score_fn(prediction, reference, **keywords)`` returns a float in [0, 1] (a scorer with an
    ``argument`` gets it first: ``score_fn(argument_value, prediction, reference, **keywords)``);
    ``keywords`` are the context keys it takes (other context keys are dropped for it);
    ``extractor(prediction, **keywords)`` gives the answer it reads (majority voting, reports;
    default: the stripped prediction); ``report_columns`` are the result columns it adds to the
    printed table; ``max_new_tokens`` the default generation budget of a benchmark it scores first;
    ``argument`` names the part after a colon (``rg:<task>``) and ``check_argument`` validates it
    (raising ``ValueError``); ``paper`` marks the reference code's scorers (``--protocol paper``);
    ``reference_summary(grid)`` gives the result keys the reference code reports for this scorer,
    added under ``--protocol paper`` (``grid``: one row of sample scores per problem).
    """

    name: str
    score_fn: Callable[..., float]
    help: str
    keywords: tuple[str, ...] = ()
    extractor: Callable[..., str | None] | None = None
    report_columns: tuple[str, ...] = ()
    max_new_tokens: int | None = None
    argument: str | None = None
    check_argument: Callable[[str], None] | None = None
    paper: bool = False
    reference_summary: Callable[[list[list[float]]], dict[str, Any]] | None = None

    @property
    def spec(self) -> str:
        """The name as the user writes it: ``math``, ``rg:<task>``."""
        return f"{self.name}:<{self.argument}>" if self.argument else self.name

    def extract(self, prediction: str, **keywords: Any) -> str | None:
        """The answer this scorer reads from ``prediction`` (``None`` when there is none)."""
        if self.extractor is None:
            return prediction.strip() or None
        return self.extractor(prediction, **keywords)


SCORER_REGISTRY: dict[str, Scorer] = {}


def register_scorer(name: str, score_fn: Callable[..., float], help: str, **fields: Any) -> Scorer:
    """Declare a scorer (see :class:`Scorer` for the fields); it then appears in ``deft eval --help``,
    :func:`list_scorers`, :func:`score` and the report columns. Returns the declaration."""
    if name in SCORER_REGISTRY:
        raise ValueError(f"scorer '{name}' is already registered")
    if not name or ":" in name:
        raise ValueError(f"scorer name {name!r}: a non-empty name without ':' (use argument= for 'name:<arg>')")
    SCORER_REGISTRY[name] = decl = Scorer(name=name, score_fn=score_fn, help=help, **fields)
    return decl


def unregister_scorer(name: str) -> None:
    """Remove a scorer declared with :func:`register_scorer`."""
    SCORER_REGISTRY.pop(name, None)


def scorer_names() -> list[str]:
    """Every scorer as the user writes it (``rg:<task>`` for a scorer with an argument), in declaration order."""
    return [s.spec for s in SCORER_REGISTRY.values()]


def list_scorers() -> dict[str, str]:
    """Map every scorer (as written, ``rg:<task>``) to its one-line help."""
    return {s.spec: s.help for s in SCORER_REGISTRY.values()}


def report_columns() -> tuple[str, ...]:
    """The secondary result columns of the printed table, in declaration order, without repeats."""
    return tuple(dict.fromkeys(c for s in SCORER_REGISTRY.values() for c in s.report_columns))


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown scorer {name!r}; valid scorers: {', '.join(scorer_names())} "
                      "(<task> is a reasoning-gym dataset name, e.g. rg:countdown)")


def get_scorer(name: str) -> tuple[Scorer, str | None]:
    """The declaration of scorer ``name`` and its argument (``rg:countdown`` -> the ``rg`` scorer and
    ``"countdown"``); raises ``ValueError`` listing the valid scorers."""
    decl = SCORER_REGISTRY.get(name)
    if decl is not None and decl.argument is None:
        return decl, None
    base, sep, arg = name.partition(":")
    decl = SCORER_REGISTRY.get(base)
    if not sep or not arg or decl is None or decl.argument is None:
        raise _unknown(name)
    if decl.check_argument is not None:
        decl.check_argument(arg)
    return decl, arg


def _keywords(decl: Scorer, context: dict) -> dict:
    known = {k for s in SCORER_REGISTRY.values() for k in s.keywords}
    unknown = sorted(set(context) - known)
    if unknown:
        raise ValueError(f"unknown scorer context {unknown}; known: {', '.join(sorted(known))}")
    return {k: v for k, v in context.items() if k in decl.keywords}


def check_scorer(name: str) -> str:
    """Return ``name`` when it is a valid scorer name, else raise ``ValueError`` listing the valid
    ones (for ``rg:<task>``, the task must be a reasoning-gym dataset)."""
    get_scorer(name)
    return name


def extracted_answer(scorer: str, prediction: str | None, **context: Any) -> str | None:
    """The answer a scorer reads from ``prediction`` (for majority voting and reports), as its
    declaration's ``extractor`` gives it: the math answer, the option letter, the stripped lower-cased
    text (``exact``, ``jaro_winkler``), the raw text (figfont paper scorers) or the ``<answer>``
    content (``rg:<task>``); ``None`` when there is none."""
    decl, _ = get_scorer(scorer)
    if prediction is None:
        return None
    return decl.extract(prediction, **{k: v for k, v in context.items() if k in decl.keywords})


def score(scorer: str, prediction: str | None, reference: Any, **context: Any) -> float:
    """Score one prediction against its reference with a named scorer; returns a float in [0, 1].

    ``scorer`` is one of :func:`scorer_names` (see the module docstring); ``context`` holds what the
    problem knows besides the reference (``options``, ``data_name``, ``entry``, ...). A ``None``
    prediction (nothing generated) scores 0. Raises ``ValueError`` for an unknown scorer.
    """
    decl, arg = get_scorer(scorer)
    kw = _keywords(decl, context)
    if decl.argument is not None:
        return float(decl.score_fn(arg, prediction, reference, **kw))
    return float(decl.score_fn(prediction, reference, **kw))


# ---------------------------------------------------------------- the built-in scorers


def _letters(letters: str | None, options: Mapping[str, str] | None) -> str:
    return letters or ("".join(options) if options else DEFAULT_LETTERS)


def _mcq(prediction: str | None, reference: str, *, letters: str | None = None,
         options: Mapping[str, str] | None = None) -> float:
    return score_mcq(prediction, reference, letters=_letters(letters, options))


def _check_rg_task(task: str) -> None:
    from reasoning_gym.factory import DATASETS

    if task not in DATASETS:
        raise ValueError(f"unknown reasoning-gym task {task!r} in scorer 'rg:{task}'; "
                         f"valid tasks: {', '.join(sorted(DATASETS))}")


def _lowered(prediction: str, **_: Any) -> str | None:
    return prediction.strip().lower() or None


def _raw(prediction: str, **_: Any) -> str | None:
    return prediction or None


def _mean(grid: list[list[float]]) -> float:
    """Average@k of a score grid: the mean over problems of the mean over samples."""
    return sum(sum(row) / len(row) for row in grid) / len(grid)


def _per_sample_index(grid: list[list[float]]) -> dict[str, Any]:
    """The reference's math summary: per sample index the mean over problems (``all_acc``), the
    first one (``acc``) and their mean (``mean_acc`` = Average@k)."""
    columns = [sum(row[j] for row in grid) / len(grid) for j in range(len(grid[0]))]
    return {"acc": columns[0], "all_acc": columns, "mean_acc": sum(columns) / len(columns)}


def _tagged(prediction: str, **_: Any) -> str | None:
    tagged = extract_tagged(prediction, "answer")
    return tagged if tagged is not None else (prediction.strip() or None)


register_scorer(
    "math", score_math, "final answer (boxed, or 'the answer is') equivalent to the reference; 1 or 0",
    keywords=("timeout", "rel_tol"), extractor=lambda p, **_: extract_math_answer(p), max_new_tokens=2048)
register_scorer(
    "mcq", _mcq, "the one option letter chosen equals the gold letter; 1 or 0",
    keywords=("letters", "options"), max_new_tokens=2048,
    extractor=lambda p, letters=None, options=None: extract_choice(p, _letters(letters, options)))
register_scorer("exact", exact_match, "stripped, lower-cased equality; 1 or 0", extractor=_lowered,
                report_columns=("exact",), max_new_tokens=32)
register_scorer("jaro_winkler", jaro_winkler, "Jaro-Winkler similarity of the stripped, lower-cased strings",
                extractor=_lowered, report_columns=("jaro_winkler",), max_new_tokens=32)
register_scorer("rg", score_rg, "the reasoning-gym task's own score_answer on the last <answer>...</answer>",
                keywords=("entry",), extractor=_tagged, max_new_tokens=1024, argument="task",
                check_argument=_check_rg_task)
register_scorer("exact_paper", exact_paper, "the paper's figfont raw equality (reported as score)",
                extractor=_raw, report_columns=("score",), max_new_tokens=32, paper=True,
                reference_summary=lambda grid: {"score": _mean(grid)})
register_scorer("exact_normalized_paper", exact_normalized_paper,
                "the paper's figfont lower-cased equality (reported as normalized_score)",
                extractor=_raw, report_columns=("normalized_score",), max_new_tokens=32, paper=True,
                reference_summary=lambda grid: {"normalized_score": _mean(grid)})
register_scorer("jaro_winkler_paper", jaro_winkler_paper,
                "the paper's Jaro-Winkler, prefix bonus always added (reported as jaro_winkler_similarity)",
                extractor=_raw, report_columns=("jaro_winkler_similarity",), max_new_tokens=32, paper=True,
                reference_summary=lambda grid: {"jaro_winkler_similarity": _mean(grid)})
register_scorer("math_paper", score_math_paper, "the Qwen2.5-Math harness (reported as acc and mean_acc)",
                keywords=("data_name",), report_columns=("acc", "mean_acc"), max_new_tokens=2048, paper=True,
                reference_summary=_per_sample_index,
                extractor=lambda p, data_name=None: extract_answer_paper(p, data_name or "math") or None)
register_scorer("mcq_paper", score_mcq_paper, "the m1 medical answer matcher (always picks an option)",
                keywords=("options",), report_columns=("acc",), max_new_tokens=2048, paper=True,
                reference_summary=lambda grid: {"acc": _mean(grid)},
                extractor=lambda p, options=None: match_choice_paper(p, options)[0] if options else None)

# the built-in scorers (a snapshot; scorer_names() includes scorers registered later)
SCORERS = tuple(scorer_names())
PAPER_SCORERS = tuple(s.name for s in SCORER_REGISTRY.values() if s.paper)
