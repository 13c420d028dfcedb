"""Scorers: ``score(scorer, prediction, reference) -> float in [0, 1]``.

=================  ===============================================================================
``math``           final answer (:func:`~deft.eval.extract.extract_math_answer`) equivalent to the
                   reference (:func:`math_equal`: plain numbers numerically, everything else with
                   ``math-verify``); 1 or 0
``mcq``            the one option letter chosen (:func:`~deft.eval.extract.extract_choice`) equals the
                   gold letter; several letters named is wrong; 1 or 0
``exact``          ``prediction.strip().lower() == reference.strip().lower()``; 1 or 0
``jaro_winkler``   Jaro-Winkler similarity of the lower-cased, stripped strings (``rapidfuzz``,
                   prefix weight 0.1); in [0, 1]
``rg:<task>``      the reasoning-gym task's own ``score_answer`` on the last ``<answer>...</answer>``
                   of the prediction (the whole stripped prediction when there is no tag)
=================  ===============================================================================

Model output is never executed. reasoning-gym tasks whose scoring evaluates the answer text with
Python ``eval`` or sympy's ``parse_expr`` (``countdown``, ``puzzle24``, ``n_queens``, ...) only see
answers that pass a token screen (:func:`is_inert_expression`) or that equal the reference text;
anything else scores 0.
"""

from __future__ import annotations

import inspect
import io
import keyword
import logging
import math
import re
import signal
import threading
import tokenize
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from .extract import DEFAULT_LETTERS, extract_boxed, extract_choice, extract_math_answer, extract_tagged

__all__ = [
    "SCORERS", "check_scorer", "exact_match", "extracted_answer", "is_inert_expression", "jaro_winkler",
    "math_equal", "parse_number", "score", "score_math", "score_mcq", "score_rg",
]

SCORERS = ("math", "mcq", "exact", "jaro_winkler", "rg:<task>")

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- plain numbers

_SEP_NUM = r"\d{1,3}(?:(?:,|\{,\})\d{3})+"
_NUMBER_RE = re.compile(
    rf"(?P<mant>[-+]?(?:{_SEP_NUM}|\d+)(?:\.\d*)?|[-+]?\.\d+)"
    r"(?:[eE](?P<e1>[-+]?\d+)|(?:\\times|\\cdot|\*|×)10\^(?:\{(?P<e2>[-+]?\d+)\}|(?P<e3>[-+]?\d)))?"
)
_PERCENT_RE = re.compile(r"\s*(?:\\%|%|\s(?:percent|per\s*cent))\s*$", re.IGNORECASE)
_UNIT_RE = re.compile(
    r"(?:\\(?:text|mathrm|mbox|textrm|operatorname)\s*\{[^{}]*\}(?:\^\{?\d\}?)?"
    r"|\^\s*\{?\\circ\}?|°"
    r"|(?<=\d)\s+[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*(?:\^\{?\d\}?)?)\s*$"
)


def parse_number(text: str) -> tuple[float, bool, bool] | None:
    """``(value, is_percent, is_integer_literal)`` when ``text`` is one plain number, else ``None``.

    Accepted: signs, decimals, thousands separators (``1,000``, ``1{,}000``, ``1\\,000``), scientific
    notation (``1.3e-27``, ``1.3 \\times 10^{-27}``), a trailing percent (``50\\%``, ``50%``), a leading
    currency sign, ``$...$`` delimiters and trailing units (``\\text{ cm}``, ``^\\circ``, `` dollars``).
    Fractions, radicals and anything symbolic are not plain numbers.
    """
    s = text.strip().strip("$").strip()
    s = re.sub(r"\\[,;:! ]", "", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("~", " ")
    s = re.sub(r"^\\?\$", "", s).strip()
    pct = _PERCENT_RE.search(s)
    if pct:
        s = s[:pct.start()].strip()
    for _ in range(3):
        s2 = _UNIT_RE.sub("", s).strip()
        if s2 == s or not s2:
            break
        s = s2
    s = re.sub(r"\s+", "", s)
    m = _NUMBER_RE.fullmatch(s)
    if not m:
        return None
    mant = m.group("mant").replace("{,}", "").replace(",", "")
    exp = m.group("e1") or m.group("e2") or m.group("e3")
    try:
        value = float(mant) * (10.0 ** int(exp) if exp else 1.0)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(value):
        return None
    is_int = exp is None and "." not in mant
    return value, pct is not None, is_int


def _numbers_equal(gold: tuple[float, bool, bool], pred: tuple[float, bool, bool], rel_tol: float) -> bool:
    """A percentage stands for both its number and its fraction (``50\\%`` ~ 50 ~ 0.5) when either
    side carries ``%``; integer golds need an exact value, others a relative tolerance."""
    gv, gp, gi = gold
    pv, pp, _ = pred
    exact = gi and not gp and not pp
    gs = (gv, gv / 100) if gp else (gv,)
    ps = (pv, pv / 100) if pp else (pv,)
    return any(g == p or (not exact and math.isclose(g, p, rel_tol=rel_tol)) for g in gs for p in ps)


# ---------------------------------------------------------------- math equivalence


def _normalise(s: str) -> str:
    s = s.strip().strip("$")
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    s = re.sub(r"\\[,;:! ]", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".")


def _to_latex_sci(s: str) -> str:
    # "1.3e-27" would otherwise read as 1.3*e - 27 with Euler's e
    return re.sub(r"(?<![A-Za-z\\])(\d+(?:\.\d+)?)[eE]([-+]?\d+)(?![\d.])", r"\1\\times 10^{\2}", s)


def _timeout_arg(timeout: float | None) -> int | None:
    """math-verify's time limits use ``signal.alarm`` (whole seconds, main thread only)."""
    if not timeout or timeout <= 0:
        return None
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        return None
    return max(1, math.ceil(timeout))


@lru_cache(maxsize=4096)
def _mv_parse(answer: str, timeout: int | None) -> tuple:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return tuple(parse("\\boxed{" + _to_latex_sci(answer) + "}", extraction_config=config,
                       parsing_timeout=timeout))


def math_equal(prediction: str | None, reference: str | None, *, timeout: float | None = 5.0,
               rel_tol: float = 1e-4) -> bool:
    """Whether two extracted answers are mathematically the same.

    1. Equal after light normalisation (spaces, ``\\left``/``\\right``, ``\\dfrac``, degrees) -> equal.
    2. Both plain numbers (:func:`parse_number`) -> compared numerically: an integer reference needs
       the exact value (``27.0`` ~ ``27``), others ``|a - b| <= rel_tol * max(|a|, |b|)``. Percentages:
       when either side carries ``%``, it matches both its number and its fraction, so ``50\\%`` ~ ``50``
       ~ ``0.5`` ~ ``\\frac12``; without ``%`` on either side, ``50`` and ``0.5`` differ.
    3. Otherwise ``math-verify`` decides (symbolic and numeric: fractions, radicals, intervals, sets,
       tuples, matrices, equations ``x=3`` ~ ``3``, ``\\text{(B)}`` ~ ``B``, units in ``\\text{}``).

    ``timeout`` is the time limit in seconds for each parse and comparison (rounded up to whole
    seconds). It is enforced with ``SIGALRM`` and therefore only in the main thread; elsewhere the
    comparison runs without a limit, so score in the main thread or in worker processes. A parse or
    comparison that times out or fails counts as not equal.
    """
    if prediction is None or reference is None:
        return False
    prediction, reference = str(prediction), str(reference)
    p_norm, r_norm = _normalise(prediction), _normalise(reference)
    if not p_norm or not r_norm:
        return False
    if p_norm == r_norm:
        return True
    g_num, p_num = parse_number(reference), parse_number(prediction)
    if g_num is not None and p_num is not None:
        return _numbers_equal(g_num, p_num, rel_tol)
    from math_verify import verify

    t = _timeout_arg(timeout)
    try:
        gold = list(_mv_parse(reference, t))
        pred = list(_mv_parse(prediction, t))
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=t))
    except Exception:  # noqa: BLE001 - a malformed answer is a wrong answer
        log.debug("math comparison failed", exc_info=True)
        return False


def _reference_answer(reference: str) -> str:
    boxed = extract_boxed(reference)
    if boxed is not None:
        return boxed
    ref = reference.strip()
    m = re.search(r"####\s*(.+?)\s*$", ref)  # a GSM8K solution
    return m.group(1).replace(",", "") if m else ref


def score_math(prediction: str | None, reference: str | Sequence[str], *, timeout: float | None = 5.0,
               rel_tol: float = 1e-4) -> float:
    """1.0 when the final answer of ``prediction`` (:func:`~deft.eval.extract.extract_math_answer`)
    is equivalent (:func:`math_equal`) to the reference, else 0.0. A reference that contains
    ``\\boxed{...}`` (a full solution) is reduced to its boxed answer, a GSM8K solution to the number
    after ``####``. A list of references accepts any of them."""
    answer = extract_math_answer(prediction)
    if answer is None:
        return 0.0
    refs = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    return float(any(math_equal(answer, _reference_answer(str(r)), timeout=timeout, rel_tol=rel_tol)
                     for r in refs))


# ---------------------------------------------------------------- choice, exact, similarity


def _gold_letter(reference: str, letters: str) -> str:
    ref = str(reference).strip()
    m = re.fullmatch(r"\(?\s*([A-Za-z])\s*\)?(?:[.:)]\s*.*)?", ref, flags=re.DOTALL)
    letter = m.group(1).upper() if m else extract_choice(ref, letters)
    if not letter or letter not in letters.upper():
        raise ValueError(f"mcq reference {reference!r} is not one of the option letters {letters!r}")
    return letter


def score_mcq(prediction: str | None, reference: str, *, letters: str = DEFAULT_LETTERS) -> float:
    """1.0 when the one letter chosen in ``prediction`` (:func:`~deft.eval.extract.extract_choice`)
    is the gold letter (``"C"``, ``"(C)"`` or ``"C. text"``), else 0.0."""
    gold = _gold_letter(reference, letters)
    return float(extract_choice(prediction, letters) == gold)


def exact_match(prediction: str | None, reference: str) -> float:
    """1.0 when ``prediction.strip().lower() == reference.strip().lower()``, else 0.0."""
    if prediction is None:
        return 0.0
    return float(prediction.strip().lower() == str(reference).strip().lower())


def jaro_winkler(prediction: str | None, reference: str) -> float:
    """Jaro-Winkler similarity of ``prediction.strip().lower()`` and ``reference.strip().lower()``.

    ``jaro = (m/|a| + m/|b| + (m - t)/m) / 3`` with ``m`` characters matching within a window of
    ``max(|a|, |b|) // 2 - 1`` and ``t`` half the transpositions; ``jw = jaro + l * 0.1 * (1 - jaro)``
    with ``l <= 4`` the common prefix, applied when ``jaro > 0.7``. Computed by ``rapidfuzz``.
    MARTHA/MARHTA = 0.9611, DWAYNE/DUANE = 0.84, DIXON/DICKSONX = 0.8133. Two empty strings give 1.0.
    """
    from rapidfuzz.distance import JaroWinkler

    if prediction is None:
        return 0.0
    return float(JaroWinkler.similarity(prediction.strip().lower(), str(reference).strip().lower()))


# ---------------------------------------------------------------- reasoning-gym

_SAFE_CALLS = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh",
    "asinh", "acosh", "atanh", "exp", "log", "ln", "sqrt", "Abs", "abs", "Rational",
})
_SAFE_KEYWORDS = frozenset({"True", "False", "None", "and", "or", "not", "in", "is"})
_EVALUATING_RE = re.compile(r"(?<![\w.])(?:eval|exec)\s*\(|parse_expr|sympify|parse_latex")


def is_inert_expression(text: str) -> bool:
    """Whether ``text`` is safe to hand to Python ``eval`` or sympy ``parse_expr``: a token screen.

    Allowed: numbers, plain names (no ``__``), strings (no f-strings), arithmetic and comparison
    operators, brackets, and calls of math functions (``sin``, ``sqrt``, ``log``, ...).
    Rejected: any other call, attribute access (``a.b``), keywords other than
    ``True/False/None/and/or/not/in/is``, ``:=``, ``**`` with an exponent other than a name or a
    number <= 100 (or chained, or more than twice), repetition (``*``) next to strings or lists,
    numbers of more than 15 digits, characters outside Python's tokens (``!``: sympy's factorial),
    text of more than 2000 characters, and text Python cannot tokenize.
    """
    if len(text) > 2000:
        return False
    try:
        toks = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.COMMENT,
                                  tokenize.INDENT, tokenize.DEDENT)]
    except (tokenize.TokenError, SyntaxError):
        return False
    if sum(t.string == "**" for t in toks) > 2:
        return False
    strings_or_lists = any(t.type == tokenize.STRING or t.string in "[]" and t.type == tokenize.OP
                           for t in toks)
    for i, t in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        name = tokenize.tok_name.get(t.type, "")
        if name.startswith("FSTRING") or name.startswith("TSTRING"):
            return False
        if t.type == tokenize.STRING and re.match(r"[A-Za-z]*[fFtT]", t.string):
            return False
        if t.type == tokenize.NUMBER and len(re.sub(r"\D", "", t.string)) > 15:
            return False
        if t.type == tokenize.ERRORTOKEN and t.string.strip():
            return False  # "!" (sympy's factorial notation), "$", "?", ...
        if t.type == tokenize.NAME:
            if "__" in t.string or (keyword.iskeyword(t.string) and t.string not in _SAFE_KEYWORDS):
                return False
            if (nxt is not None and nxt.string == "(" and t.string not in _SAFE_CALLS
                    and t.string not in _SAFE_KEYWORDS):
                return False
        if t.type == tokenize.OP:
            if t.string in (".", ":=", "@", ";"):
                if t.string == "." and (nxt is None or nxt.type != tokenize.NAME):
                    continue
                return False
            if t.string == "**":
                j = i + 1
                if j < len(toks) and toks[j].string in "+-":
                    j += 1
                e = toks[j] if j < len(toks) else None
                if e is None or not (e.type == tokenize.NAME or (
                        e.type == tokenize.NUMBER and _small_number(e.string))):
                    return False
                if j + 1 < len(toks) and toks[j + 1].string == "**":
                    return False  # a tower 9**9**9
            if t.string in ("*", "*=") and strings_or_lists:
                return False
            if t.string == "(" and i > 0 and toks[i - 1].type == tokenize.OP and toks[i - 1].string in ")]":
                return False  # calling the result of an expression
    return True


def _small_number(s: str) -> bool:
    try:
        return abs(float(s)) <= 100
    except ValueError:
        return False


@lru_cache(maxsize=None)
def _rg_task(task: str) -> tuple[Callable[[str | None, dict], float], bool]:
    """``(score_answer, evaluates_answer_text)`` for a reasoning-gym dataset name."""
    from reasoning_gym.factory import DATASETS, get_score_answer_fn

    if task not in DATASETS:
        raise ValueError(f"unknown reasoning-gym task {task!r}; valid: {', '.join(sorted(DATASETS))}")
    fn = get_score_answer_fn(task)
    cls = DATASETS[task][0]
    sources = []
    for obj in (cls, cls.score_answer):
        mod = inspect.getmodule(obj)
        if mod is not None:
            try:
                sources.append(inspect.getsource(mod))
            except (OSError, TypeError):
                sources.append("eval(")  # unknown source: screen answers
    return fn, any(_EVALUATING_RE.search(src) for src in sources)


def score_rg(task: str, prediction: str | None, reference: str, *, entry: dict | None = None) -> float:
    """The reasoning-gym task's own ``score_answer(answer, entry)``, clipped to [0, 1].

    ``answer`` is the last ``<answer>...</answer>`` of ``prediction`` (the stripped prediction when
    there is no tag). ``entry`` is the dataset entry (``question``/``answer``/``metadata``) that some
    tasks need; without it ``{"answer": reference, "metadata": {}}`` is used. For tasks whose scoring
    evaluates the answer text, answers that fail :func:`is_inert_expression` and differ from the
    reference (and from ``metadata["valid_answers"]``) score 0 without being scored.
    """
    fn, evaluates = _rg_task(task)
    if prediction is None:
        return 0.0
    answer = extract_tagged(prediction, "answer")
    if answer is None:
        answer = prediction.strip()
    entry = dict(entry) if entry else {"metadata": {}}
    entry.setdefault("answer", reference)
    entry.setdefault("metadata", {})
    if evaluates and not is_inert_expression(answer):
        trusted = {str(entry["answer"]).strip(), str(reference).strip()}
        valid = entry["metadata"].get("valid_answers") if isinstance(entry["metadata"], dict) else None
        if isinstance(valid, (list, tuple, set)):
            trusted |= {str(v).strip() for v in valid}
        if answer.strip() not in trusted:
            return 0.0
    try:
        value = float(fn(answer, entry))
    except KeyError as e:
        raise ValueError(f"reasoning-gym task {task!r} needs the dataset entry to score an answer "
                         f"(missing {e}); pass entry=<the generated item>") from e
    except Exception:  # noqa: BLE001 - a task that chokes on a malformed answer: that answer is wrong
        log.debug("reasoning-gym %s score_answer failed", task, exc_info=True)
        return 0.0
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


# ---------------------------------------------------------------- dispatch


def extracted_answer(scorer: str, prediction: str | None, **kw: Any) -> str | None:
    """The answer a scorer reads from ``prediction`` (for majority voting and reports): the math
    answer, the option letter, the stripped lower-cased text (``exact``, ``jaro_winkler``) or the
    ``<answer>`` content (``rg:<task>``); ``None`` when there is none."""
    if prediction is None:
        return None
    if scorer == "math":
        return extract_math_answer(prediction)
    if scorer == "mcq":
        return extract_choice(prediction, kw.get("letters", DEFAULT_LETTERS))
    if scorer in ("exact", "jaro_winkler"):
        return prediction.strip().lower() or None
    check_scorer(scorer)
    tagged = extract_tagged(prediction, "answer")
    return tagged if tagged is not None else (prediction.strip() or None)


_SCORERS: dict[str, Callable[..., float]] = {
    "math": score_math,
    "mcq": score_mcq,
    "exact": exact_match,
    "jaro_winkler": jaro_winkler,
}


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


def score(scorer: str, prediction: str | None, reference: Any, **kw: Any) -> float:
    """Score one prediction against its reference with a named scorer; returns a float in [0, 1].

    ``scorer`` is one of ``math``, ``mcq``, ``exact``, ``jaro_winkler`` or ``rg:<task>`` (see the
    module docstring). Keyword arguments go to the scorer: ``timeout`` and ``rel_tol`` (math),
    ``letters`` (mcq), ``entry`` (rg). A ``None`` prediction (nothing generated) scores 0.
    Raises ``ValueError`` for an unknown scorer.
    """
    fn = _SCORERS.get(scorer)
    if fn is not None:
        return float(fn(prediction, reference, **kw))
    check_scorer(scorer)
    return score_rg(scorer[3:], prediction, reference, **kw)
