"""Text scorers: ``mcq`` (one option letter), ``exact``, ``jaro_winkler`` and ``rg:<task>``
(reasoning-gym's own verifiers, behind a screen for tasks that evaluate the answer text)."""

from __future__ import annotations

import inspect
import io
import keyword
import logging
import math
import re
import tokenize
from collections.abc import Callable
from functools import lru_cache

from .extract import DEFAULT_LETTERS, extract_choice, extract_tagged

__all__ = ["exact_match", "is_inert_expression", "jaro_winkler", "score_mcq", "score_rg"]

log = logging.getLogger(__name__)


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
    decimal number <= 100 (or chained, or more than twice), repetition (``*``) next to strings or
    lists, numbers of more than 15 digits, ``!`` (sympy's factorial), ``$``, ``?`` and backquotes,
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
        if (t.type == tokenize.ERRORTOKEN and t.string.strip()) or t.string in ("!", "$", "?", "`"):
            return False  # "!" (sympy's factorial notation), "$", "?", ...: an OP token since Python 3.12
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

