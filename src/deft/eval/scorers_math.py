"""The ``math`` scorer: final answers compared as numbers or, failing that, with ``math-verify``.

* :func:`parse_number` — one plain number (separators, percent, units, scientific notation).
* :func:`math_equal` — equivalence of two extracted answers; :func:`score_math` — a prediction
  against a reference (a boxed solution, a GSM8K solution or a plain answer).
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
from collections.abc import Sequence
from functools import lru_cache

from ..text import extract_boxed
from .extract import extract_math_answer

__all__ = ["math_equal", "parse_number", "score_math", "timeout_seconds"]

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


def timeout_seconds(timeout: float | None) -> int | None:
    """math-verify's time limits use ``signal.alarm`` (whole seconds, main thread only): the
    limit to pass, or ``None`` where it cannot be enforced."""
    if not timeout or timeout <= 0:
        return None
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        return None
    return max(1, math.ceil(timeout))


_timeout_arg = timeout_seconds

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

