"""The paper's scorers for figfont and the medical suite (``--protocol paper``).

They reproduce the scoring rules of the paper's reference code (``luludus/DEFT``), including its
quirks, so that a number measured with deft can stand next to a number in the paper's tables:

==========================  =========================================================================
``exact_paper``             ``prediction == reference``: raw string equality, nothing stripped
                            (the figfont ``score``)
``exact_normalized_paper``  ``prediction.lower() == reference.lower()``: not stripped (figfont
                            ``normalized_score``)
``jaro_winkler_paper``      Jaro-Winkler of the lower-cased, stripped strings with the Winkler prefix
                            bonus always added (no 0.7 threshold); identical strings 1.0, one empty 0.0
``mcq_paper``               the m1 medical matcher (:func:`match_choice_paper`): it always picks an
                            option; 1.0 when it is the gold letter (case-insensitive)
==========================  =========================================================================

``math_paper`` (the Qwen2.5-Math evaluation harness) lives in :mod:`.scorers_paper_math`.
Written from the behaviour of the reference, not copied from it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

__all__ = [
    "exact_normalized_paper", "exact_paper", "jaro_winkler_paper", "match_choice_paper", "score_mcq_paper",
]


def exact_paper(prediction: str | None, reference: str) -> float:
    """1.0 when ``prediction == reference`` exactly (no strip, case-sensitive), else 0.0."""
    return float(prediction is not None and prediction == str(reference))


def exact_normalized_paper(prediction: str | None, reference: str) -> float:
    """1.0 when ``prediction.lower() == reference.lower()`` (whitespace kept), else 0.0."""
    return float(prediction is not None and prediction.lower() == str(reference).lower())


def _jaro(a: str, b: str) -> float:
    """Jaro similarity: ``(m/|a| + m/|b| + (m - t/2)/m) / 3``; characters of ``a`` are matched, in
    order, to the first unmatched equal character of ``b`` within ``max(|a|, |b|) // 2 - 1``;
    ``t`` counts matched characters out of order."""
    window = max(max(len(a), len(b)) // 2 - 1, 0)
    used_b = [False] * len(b)
    matched_a = []
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(i + window + 1, len(b))):
            if not used_b[j] and b[j] == ch:
                used_b[j] = True
                matched_a.append(ch)
                break
    m = len(matched_a)
    if m == 0:
        return 0.0
    matched_b = [ch for ch, used in zip(b, used_b) if used]
    t = sum(x != y for x, y in zip(matched_a, matched_b))
    return (m / len(a) + m / len(b) + (m - t / 2) / m) / 3


def jaro_winkler_paper(prediction: str | None, reference: str, *, prefix_weight: float = 0.1) -> float:
    """The reference figfont evaluation's Jaro-Winkler similarity, in [0, 1].

    Both strings are lower-cased and stripped; equal strings give 1.0, an empty one 0.0; otherwise
    ``jaro + l * prefix_weight * (1 - jaro)`` with ``l <= 4`` the common prefix length, the bonus
    added whatever ``jaro`` is (textbook Jaro-Winkler, and rapidfuzz, add it only above 0.7).
    """
    if prediction is None:
        return 0.0
    a, b = prediction.lower().strip(), str(reference).lower().strip()
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    jaro = _jaro(a, b)
    prefix = 0
    for x, y in zip(a[:4], b[:4]):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * prefix_weight * (1 - jaro)


# ---------------------------------------------------------------- the m1 medical matcher

_OPTION_LETTERS = "ABCDEFGHIJKLMN"
_ANSWER_IS = re.compile(r"answer is\s*?([A-N])", re.S)


def _standalone_letter(letters: str) -> re.Pattern:
    # a letter with a non-word character (or CJK, "is ", the start) before it and a non-word
    # character (or CJK, the end) after it; "a " / "A " read as an article, not a letter
    return re.compile(r"(?:[\u4e00-\u9fff]|is |是|项|为|\W|^)(?![aA] )([" + letters + r"])(?:\W|[\u4e00-\u9fff]|$)",
                      re.S)


def match_choice_paper(text: str, options: Mapping[str, str]) -> tuple[str, int]:
    """``(letter, kind)``: the option the m1 medical evaluation reads from ``text``; always one.

    1. the text after the last ``## Final Response\\n\\n`` (HuatuoGPT-o1's format) when present;
    2. kind 1: the letter of the last "answer is X" (case-sensitive, ``X`` in A-N, spaces allowed);
    3. kind 1: else the last standalone option letter among the first ``len(options)`` of A-N
       (matches do not overlap: "A,B" finds only A);
    4. kind 2: else the option whose (lower-cased) text appears last in the lower-cased text;
    5. kind 3: else the option text most similar to the whole text (``difflib`` ratio; the last
       of equally similar options).
    """
    if "## Final Response\n\n" in text:
        text = text.split("## Final Response\n\n")[-1]
    found = list(_ANSWER_IS.finditer(text))
    if found:
        return found[-1].group(1), 1
    letters = _OPTION_LETTERS[:len(options)]
    found = list(_standalone_letter(letters).finditer(text)) if letters else []
    if found:
        return found[-1].group(1), 1
    low = text.lower()
    at = [(key, low.rindex(str(val).lower())) for key, val in options.items() if str(val).lower() in low]
    if at:
        return max(at, key=lambda kv: kv[1])[0], 2  # max keeps the first of equal positions
    best, best_ratio = None, 0.0
    for key, val in options.items():
        ratio = difflib.SequenceMatcher(None, str(val).lower(), low).ratio()
        if ratio >= best_ratio:
            best, best_ratio = key, ratio
    return str(best), 3


def score_mcq_paper(prediction: str | None, reference: str, *, options: Mapping[str, str] | None = None) -> float:
    """1.0 when :func:`match_choice_paper` picks the gold letter ``reference`` (case-insensitive).

    ``options`` (``{letter: text}``) is required: the matcher falls back to the option texts.
    """
    if not options or not isinstance(options, Mapping):
        raise ValueError("mcq_paper needs the problem's options as options={letter: text}")
    if prediction is None:
        return 0.0
    letter, _ = match_choice_paper(prediction, options)
    return float(letter.lower() == str(reference).strip().lower())
