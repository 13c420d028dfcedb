"""Answer extraction from free-form model output: boxed math answers, option letters, tagged answers.

:func:`extract_boxed` lives in :mod:`deft.text` (the data layer reads gold answers with it too) and
is re-exported here. Everything here is plain string processing: nothing is evaluated or executed.
"""

from __future__ import annotations

import re

from ..text import extract_boxed  # the one parser of boxed answers, shared with deft.data

__all__ = ["DEFAULT_LETTERS", "extract_boxed", "extract_choice", "extract_math_answer", "extract_tagged"]

DEFAULT_LETTERS = "ABCDEFGHIJ"

_ANSWER_IS_RE = re.compile(r"\banswer\s*(?:is\b|:|=)\s*:?", re.IGNORECASE)


def _clean_math_tail(s: str) -> str:
    s = s.strip()
    s = re.sub(r"^(?:\*\*|__)+|(?:\*\*|__)+$", "", s).strip()
    if s.startswith("$$"):
        end = s.find("$$", 2)
        s = s[2:end] if end > 0 else s[2:]
    elif s.startswith("$"):
        end = s.find("$", 1)
        s = s[1:end] if end > 0 else s[1:]
    elif s.startswith("\\(") or s.startswith("\\["):
        close = "\\)" if s[1] == "(" else "\\]"
        end = s.find(close, 2)
        s = s[2:end] if end > 0 else s[2:]
    else:
        # stop at the end of the sentence: a period followed by a space or the end, not a decimal point
        s = re.split(r"\.(?:\s|$)", s, maxsplit=1)[0]
    s = re.sub(r"(?:\*\*|__)+", "", s)
    return s.strip().rstrip(".").strip()


def extract_math_answer(text: str | None) -> str | None:
    """The final answer of a math solution, as a string for :func:`deft.eval.scorers.math_equal`.

    Order: the last complete ``\\boxed{...}`` (:func:`extract_boxed`); else the Minerva form
    ``final answer is $X$. I hope``; else the text after the last "the answer is" / "final answer is"
    / "Answer:" on its line (a ``$...$`` right after it is taken whole, otherwise the sentence up to a
    period that is not a decimal point). No fallback to "the last number in the text": an answer the
    model did not state is not an answer. Returns ``None`` when nothing is found.
    """
    if not text:
        return None
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    m = re.search(r"final answer is \$(.+?)\$\. I hope", text, re.DOTALL)
    if m:
        return m.group(1).strip()
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    tail = text[matches[-1].end():]
    tail = tail.lstrip(" \t")
    if tail.startswith("$"):  # keep a display formula that spans lines
        ans = _clean_math_tail(tail)
    else:
        ans = _clean_math_tail(tail.split("\n", 1)[0])
    return ans or None


def extract_tagged(text: str | None, tag: str = "answer") -> str | None:
    """The stripped content of the last ``<tag>...</tag>`` in ``text`` (reasoning-gym's answer
    convention), or ``None`` when there is none."""
    if not text:
        return None
    found = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, flags=re.DOTALL)
    return found[-1].strip() if found else None


# ---------------------------------------------------------------- multiple choice


def _strip_markup(text: str) -> str:
    t = re.sub(r"\\(?:text|textbf|mathrm|mathbf|textit)\s*\{([^{}]*)\}", r"\1", text)
    t = t.replace("**", "").replace("__", "").replace("`", "").replace("$", "")
    t = re.sub(r"(?<![A-Za-z0-9])\*|\*(?![A-Za-z0-9])", "", t)
    return t


def _letter_patterns(letters: str) -> tuple[re.Pattern, re.Pattern, re.Pattern, re.Pattern]:
    up = "".join(dict.fromkeys(letters.upper()))
    L = f"[{re.escape(up)}]"
    low = f"[{re.escape(up.lower())}]"
    # a letter token: "C", "C)", "(C)", "[C]", "(c)"; it must not run into a word ("Aspirin" is no letter)
    tok = rf"(?:\(\s*(?:{L}|{low})\s*\)|\[\s*{L}\s*\]|{L}\)?)(?![A-Za-z0-9])"
    sep = r"\s*(?:,|/|&|\+|-|\u2013|\band\b|\bor\b)\s*(?:(?i:option|choice)\s+)?"
    listed = rf"(?P<tok>{tok})(?P<more>(?:{sep}{tok})*)"
    statement = re.compile(
        r"(?i:\b(?:(?:correct|right|best|final)\s+)?(?:answer|choice|option|selection)s?"
        r"(?:\s+(?:to\s+(?:this|the)\s+question|here))?"
        r"(?:\s+(?:is|are|would\s+be|should\s+be|will\s+be|must\s+be)\b\s*:?|\s*[:=])"
        r"\s*(?:(?:probably|likely|definitely|clearly|therefore|thus)\s+)?"
        r"(?:(?:option|choice|letter)\s+)?)" + listed
    )
    # "C is correct", "Option (C) is the best answer"
    verdict = re.compile(
        r"(?:(?i:option|choice)\s+)?(?<![A-Za-z0-9])" + listed
        + r"\s+(?:is|are)\s+(?:the\s+)?(?i:correct|right|best)\b"
    )
    final_line = re.compile(
        r"\s*(?:(?i:(?:final\s+)?(?:answer|option|choice))\s*[:\-]?\s*)?" + listed + r"(?:[.:)\]]\s*.*|\s*)"
    )
    whole = re.compile(r"\s*" + listed + r"(?:[.:)]\s*.*|\s*)", re.DOTALL)
    return statement, verdict, final_line, whole


_FINAL_LOWER_RE = re.compile(r"(?i:\bfinal\s+answer\s*:)\s*\(?(?P<tok>[a-j])\)?(?P<more>)(?=\s*[.)\]]?\s*$)",
                             re.MULTILINE)
_PAREN_LETTER_RE = re.compile(r"(?<![A-Za-z0-9(\[])([A-J])\)")


def _from_match(m: re.Match, letters: str) -> str | None:
    """The one letter a match names, or ``None`` when it names several."""
    text = m.group("tok") + " " + re.sub(r"(?i)\b(?:and|or|option|choice)\b", " ", m.group("more") or "")
    found = {c.upper() for c in re.findall(r"[A-Za-z]", text) if c.upper() in letters}
    return found.pop() if len(found) == 1 else None


def extract_choice(text: str | None, letters: str = DEFAULT_LETTERS) -> str | None:
    """The single option letter chosen in free text, or ``None``.

    Recognised, in this order of preference:

    1. a ``\\boxed{C}`` (also ``\\boxed{\\text{(C)}}``, ``\\boxed{C. Hypertension}``);
    2. the last answer statement: "The answer is (C)", "Answer: **C**", "the correct option is C",
       "Final choice: C. Hypertension"; without one, the last verdict "C is correct" /
       "(C) is the best answer";
    3. a last non-empty line that starts with the letter: "C", "(C)", "**C.** Hypertension", "C) 42";
    4. a letter followed by ``)`` inside a sentence: "so we choose B) because ..." (when the text names
       one such letter only).

    Letters are upper case (lower case inside parentheses, "(c)", and alone after "Final answer:",
    "Final answer: c") and must not run into a word.
    An answer naming several letters ("A and C", "B, D", "A or B") gives ``None``: it is wrong.
    ``letters`` are the valid option letters.
    """
    if not text:
        return None
    letters = letters.upper()
    statement, verdict, final_line, whole = _letter_patterns(letters)
    boxed = extract_boxed(text)
    if boxed is not None:
        m = whole.fullmatch(_strip_markup(boxed))
        if m:
            return _from_match(m, letters)
    clean = _strip_markup(text)
    for pat in (statement, verdict):  # an explicit answer statement outranks a verdict
        found = list(pat.finditer(clean))
        if pat is statement:  # "Final answer: c" (a lower-case letter alone after the colon)
            found += [m for m in _FINAL_LOWER_RE.finditer(clean) if m.group("tok").upper() in letters]
            found.sort(key=lambda m: m.start())
        if found:
            return _from_match(found[-1], letters)
    lines = [ln for ln in clean.splitlines() if ln.strip()]
    if lines:
        m = final_line.fullmatch(lines[-1])
        if m and len(lines) > 1:
            prev = final_line.fullmatch(lines[-2])
            if prev and _from_match(prev, letters) not in (None, _from_match(m, letters)):
                return None  # the text ends with a list of options, not with a choice
        if m:
            return _from_match(m, letters)
    # "... so we choose B) because ...": letters followed by ")" inside a sentence; one letter only
    named = {c.upper() for c in _PAREN_LETTER_RE.findall(clean) if c.upper() in letters}
    return named.pop() if len(named) == 1 else None
