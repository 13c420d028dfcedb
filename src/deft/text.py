"""Plain-text helpers shared by the data and evaluation layers (below both: imports neither).

:func:`extract_boxed` reads the last ``\\boxed{...}`` of a text: the gold answer of a math
solution when :mod:`deft.data` writes records, a model's final answer when :mod:`deft.eval`
scores it. Everything here is plain string processing: nothing is evaluated or executed.
"""

from __future__ import annotations

import re

__all__ = ["extract_boxed"]

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _balanced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[start] == '{'`` and the index after it.

    A backslash escapes the next character, so ``\\{`` and ``\\}`` do not count as braces.
    """
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
        i += 1
    return None


def _boxed_contents(text: str) -> list[str]:
    out = []
    for m in _BOX_RE.finditer(text):
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            got = _balanced(text, j)
            if got is not None:
                out.append(got[0])
        elif j > m.end():  # "\boxed 5": one token up to a space or "$"
            tok = re.match(r"[^\s$]+", text[j:])
            if tok:
                out.append(tok.group(0))
    return out


def extract_boxed(text: str | None) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    Braces are matched with nesting (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``) and escaped braces
    ``\\{ \\}`` do not count. ``\\boxed 5`` gives ``5``. A box directly wrapping another box is
    unwrapped. A last box left unclosed (a truncated generation) is skipped in favour of the previous
    complete one. Returns the stripped content, or ``None`` when there is no complete box.
    """
    if not text:
        return None
    found = _boxed_contents(text)
    if not found:
        return None
    ans = found[-1].strip()
    while True:  # \boxed{\boxed{x}} -> x
        m = _BOX_RE.match(ans)
        if not m:
            return ans
        j = m.end()
        while j < len(ans) and ans[j] in " \t":
            j += 1
        got = _balanced(ans, j) if j < len(ans) and ans[j] == "{" else None
        if got is None or got[1] != len(ans):
            return ans
        ans = got[0].strip()
