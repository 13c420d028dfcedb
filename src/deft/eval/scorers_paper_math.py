"""``math_paper``: the Qwen2.5-Math evaluation harness's answer extraction and equality, as the
paper's reference code (``luludus/DEFT``, ``evaluations/math``) scores math benchmarks.

Pipeline for one sample (:func:`score_math_paper`):

1. :func:`extract_answer_paper` — the Minerva form "final answer is $X$. I hope" first; else the
   text after the last ``boxed`` (a brace group, an unclosed last ``\\boxed{`` running to the end of
   the text, or ``\\boxed X`` up to a ``$``); else after "he answer is" / "final answer is"; else
   the last number in the text (commas removed); then :func:`strip_string_paper`.
2. the gold answer goes through :func:`strip_string_paper` as well (units kept for
   ``minerva_math``, as the harness does).
3. :func:`math_equal_paper` — equal text (case-insensitive); both plain numbers (``float`` after
   removing commas, ``50%`` read as 0.5): equal when the prediction is within relative tolerance
   1e-4 of ``gold/100``, ``gold`` or ``gold*100``; bracket-insensitive text; tuples/intervals part by
   part; matrices (``pmatrix``, ``bmatrix``) of the same shape cell by cell, each cell by these same
   rules; ``x=5`` against ``5``; then symbolic equality, for which deft uses ``math-verify`` where the
   harness uses latex2sympy/sympy (the one intended difference; see the module tests' data note);
   last, the harness's numeric rule: both parsed answers evaluated to numbers (sympy's ``evalf``, the
   harness's ``N``) are equal when ``math.isclose(gold, pred, rel_tol=1e-4)`` (``0.3333`` = ``\\frac{1}{3}``,
   ``1.4142`` = ``\\sqrt{2}``, ``0.333`` != ``\\frac{1}{3}``). Complex, infinite or non-numeric values are
   never equal. Answers naming pi or e (``\\pi``, ``e``) are not evaluated, because the harness's LaTeX
   parser reads them as plain symbols (``3.1416`` != ``\\pi`` there); ``\\log`` without a base is the
   natural logarithm and text with a bare ``%`` is not parsed, as there. Each parse, comparison and
   evaluation gets 3 s.

The normalisation reproduces the harness's quirks on purpose (``--protocol paper`` only): stand-alone
unit words are deleted, including single letters such as ``a``, ``t``, ``s``, ``m`` (``\\frac{a}{b}``
becomes ``\\frac{}{b}``), ``and`` is deleted everywhere, and number words are read as numbers.
Written from the behaviour of the reference, not copied from it.
"""

from __future__ import annotations

import logging
import math
import re

__all__ = ["STRIP_EXCEPTIONS", "extract_answer_paper", "math_equal_paper", "score_math_paper",
           "strip_string_paper"]

log = logging.getLogger(__name__)

# data sets whose answers keep their units (the harness's exceptions)
STRIP_EXCEPTIONS = ("carp_en", "minerva_math")

# unit words the harness deletes when they stand alone (a regex each, matched between non-word
# characters or the ends); the order matters, as in the harness, and each also with a plural "s"
_UNITS = (
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime",
    "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way", "west",
    "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change", "men", "soldier", "pie",
    "bc", "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th",
    "π r 2", "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "feet",
    "am", "pm", "hr", "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm",
    "number", "kmph", "day", "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch",
    "mp", "∏ cm ³", "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km",
    "m", "cm", "mm", "apple", "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less",
    "Surface", "litre", "pi sq m", "s .", "metre", "meter", "inch",
)
_UNIT_RES = tuple(re.compile(r"(^|\W)" + u + r"($|\W)") for u in (*_UNITS, *(u + "s" for u in _UNITS)))

_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}


def _words_to_number(text: str) -> str:
    """The harness reads any text holding number words as that number (``"x five"`` -> ``5``,
    ``"two hundred and five"`` -> ``205``, ``"point five"`` -> ``0.5``); other words are ignored.
    Text without number words, or with a scale word twice, is returned unchanged."""
    if text.isdigit():
        return str(int(text))
    words = [w for w in text.replace("-", " ").lower().split()
             if w in _SMALL or w in _TENS or w in _SCALES or w in ("hundred", "point")]
    if not words or any(words.count(s) > 1 for s in (*_SCALES, "point")):
        return text
    decimals = []
    if "point" in words:
        at = words.index("point")
        words, decimals = words[:at], words[at + 1:]
    total, group = 0, 0
    for w in words:
        if w == "hundred":
            group = max(group, 1) * 100
        elif w in _SCALES:
            total += max(group, 1) * _SCALES[w]
            group = 0
        else:
            group += _SMALL.get(w, _TENS.get(w, 0))
    value: float = total + group
    if decimals:
        if not all(d in _SMALL and _SMALL[d] < 10 for d in decimals):
            return str(int(value))
        value += float("0." + "".join(str(_SMALL[d]) for d in decimals))
    return str(value)


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{72}`` -> ``\\frac{1}{72}``."""
    head, *parts = s.split("\\frac")
    out = head
    for part in parts:
        out += "\\frac"
        if part.startswith("{"):
            out += part
        elif len(part) < 2:
            return s
        elif part[1] != "{":
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
        else:
            out += "{" + part[0] + "}" + part[1:]
    return out


def _fix_a_slash_b(s: str) -> str:
    """``3/4`` -> ``\\frac{3}{4}`` when both sides are integers written plainly (or hold ``sqrt``)."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    a, b = parts
    try:
        a2 = a if "sqrt" in a else str(int(a))
        b2 = b if "sqrt" in b else str(int(b))
    except ValueError:
        return s
    return f"\\frac{{{a2}}}{{{b2}}}" if f"{a2}/{b2}" == s else s


def strip_string_paper(text: str, skip_unit: bool = False) -> str:
    """The harness's answer normalisation (``strip_string``), quirks included (module docstring)."""
    s = str(text).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    no_unit = re.sub(r"\\text{.*?}$", "", s).strip()
    if no_unit and no_unit != s:
        s = no_unit
    if not skip_unit:
        for _ in range(2):
            for unit in _UNIT_RES:
                t = unit.sub(r"\1\2", s)
                if t:
                    s = t
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _words_to_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _fix_a_slash_b(_fix_fracs(s))


def _after_boxed(text: str) -> str:
    tail = text.split("boxed")[-1]
    if not tail:
        return ""
    if tail[0] != "{":
        return tail.split("$")[0].strip()
    depth, out = 1, []
    for c in tail[1:]:  # braces counted without escapes; an unclosed box runs to the end
        depth += (c == "{") - (c == "}")
        if depth == 0:
            break
        out.append(c)
    return "".join(out)


def extract_answer_paper(text: str, data_name: str = "math") -> str:
    """The harness's final answer of a solution, normalised (see the module docstring)."""
    text = text.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        pred = _after_boxed(text)
        if not pred and not text.split("boxed")[-1]:
            return ""
    elif "he answer is" in text:
        pred = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        pred = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        pred = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        pred = numbers[-1] if numbers else ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred.startswith(":"):
        pred = pred[1:]
    if pred.endswith("."):
        pred = pred[:-1]
    if pred.endswith("/"):
        pred = pred[:-1]
    return strip_string_paper(pred, skip_unit=data_name in STRIP_EXCEPTIONS)


def _as_number(s: str) -> float | None:
    s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        pass
    if s.endswith("%"):
        s = s[:-1].removesuffix("\\")
        try:
            return float(s) / 100
        except ValueError:
            pass
    return None


def _choice(pred: str) -> str:
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", pred.upper())
    return (letters[-1] if letters else pred.strip().strip(".")).rstrip(".").rstrip("/")


# a LaTeX command name (``\\frac``, ``\\exp``), skipped when looking for the letter e
_COMMAND = re.compile(r"\\[A-Za-z]+")
# a ``%`` with no backslash before it, which none of the harness's parsers reads
_BARE_PERCENT = re.compile(r"(?<!\\)%")
# ``\\log`` with no base, which the harness's LaTeX parser reads as the natural logarithm
_BARE_LOG = re.compile(r"\\log(?![_A-Za-z])")


def _names_constant(text: str) -> bool:
    """Whether ``text`` names pi or e: the harness's LaTeX parser reads ``\\pi``, ``π``, ``e`` and
    ``E`` as plain symbols, so a value that names them has no number there (``\\exp(1)`` has)."""
    if "\\pi" in _COMMAND.findall(text) or "π" in text:
        return True
    return bool(re.search("[eE]", _COMMAND.sub("", text)))


def _number(expr) -> float | None:
    """The value of a parsed answer as a finite real ``float`` (sympy's ``evalf``, the harness's
    ``N``), or ``None`` for what has no such value: free symbols, sets, matrices, equations,
    complex or infinite values, and floats that overflow."""
    import sympy

    if not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    value = expr.doit().evalf()  # doit: math-verify keeps parts such as ``\\%``'s 1/100 unevaluated
    if not (value.is_Number and value.is_real and value.is_finite):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _numeric_equal(p_expr, g_expr, timeout: int | None) -> bool:
    """The harness's last symbolic test: both values as numbers, equal within relative 1e-4
    (``math.isclose(gold, pred, rel_tol=1e-4)``), each evaluation within ``timeout`` seconds."""
    from math_verify.utils import timeout as time_limit

    p_num = time_limit(timeout)(_number)(p_expr)
    g_num = time_limit(timeout)(_number)(g_expr) if p_num is not None else None
    return g_num is not None and math.isclose(g_num, p_num, rel_tol=1e-4)


def _symbolic_equal(pred: str, gold: str) -> bool:
    """Symbolic equality with math-verify (the harness uses latex2sympy / sympy here), then the
    harness's numeric rule (:func:`_numeric_equal`) where neither side names pi or e
    (:func:`_names_constant`). As in the harness, text with a bare ``%`` is not parsed and ``\\log``
    without a base is the natural logarithm."""
    from math_verify import parse, verify
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

    from .scorers_math import timeout_seconds

    if _BARE_PERCENT.search(pred) or _BARE_PERCENT.search(gold):
        return False
    # math-verify reads a bare \log as base 10
    pred, gold = _BARE_LOG.sub(r"\\ln", pred), _BARE_LOG.sub(r"\\ln", gold)
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    t = timeout_seconds(3.0)  # the harness gives each comparison 3 s
    try:
        g = parse("$" + gold + "$", extraction_config=config, parsing_timeout=t)
        p = parse("$" + pred + "$", extraction_config=config, parsing_timeout=t)
        if not (g and p):
            return False
        if verify(g, p, timeout_seconds=t):
            return True
        if _names_constant(pred) or _names_constant(gold):
            return False
        return _numeric_equal(p[0], g[0], t)
    except Exception:  # noqa: BLE001 - what cannot be compared is not equal
        log.debug("symbolic comparison failed", exc_info=True)
        return False


_MATRIX_BEGINS = ("\\begin{pmatrix}", "\\begin{bmatrix}")
_MATRIX_ENDS = ("\\end{pmatrix}", "\\end{bmatrix}")


def _matrix_cells(text: str) -> list[list[str]] | None:
    """The cells of a matrix answer (``\\begin{pmatrix} ... \\end{pmatrix}``, or ``bmatrix``), row
    by row: rows split at ``\\\\`` (blank rows dropped), cells at ``&``; ``None`` for any other text."""
    if not (text.startswith(_MATRIX_BEGINS) and text.endswith(_MATRIX_ENDS)):
        return None
    body = text[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")]  # (bmatrix's are as long)
    return [row.strip().split("&") for row in body.split("\\\\") if row.strip()]


def math_equal_paper(prediction: str | None, reference: str | None) -> bool:
    """The harness's ``math_equal`` on normalised answers (see the module docstring)."""
    if prediction is None or reference is None:
        return False
    pred, gold = str(prediction), str(reference)
    if pred.strip().lower() == gold.strip().lower():
        return True
    if gold in ("A", "B", "C", "D", "E") and _choice(pred) == gold:
        return True
    p_num, g_num = _as_number(pred), _as_number(gold)
    if p_num is not None and g_num is not None:
        return any(math.isclose(g, p_num, rel_tol=1e-4) for g in (g_num / 100, g_num, g_num * 100))
    if not pred:
        return False
    pred, gold = pred.strip(), gold.strip()
    p_str, g_str = pred, gold
    if (pred[:1] == "[" and pred[-1:] == "]" and not gold.startswith("(")) or \
            (pred[:1] == "(" and pred[-1:] == ")" and not gold.startswith("[")):
        p_str, g_str = p_str.strip("[]()"), g_str.strip("[]()")
    p_str, g_str = re.sub(r"[{}()]", "", p_str), re.sub(r"[{}()]", "", g_str)
    if p_str.lower() == g_str.lower():
        return True
    bracketed = re.compile(r"[(\[].+[)\]]")
    if bracketed.match(pred) and bracketed.match(gold):
        p_parts, g_parts = pred[1:-1].split(","), gold[1:-1].split(",")
        if len(p_parts) == len(g_parts) and all(math_equal_paper(a, b) for a, b in zip(p_parts, g_parts)):
            return True
    p_cells, g_cells = _matrix_cells(pred), _matrix_cells(gold)
    if p_cells is not None and g_cells is not None and [len(r) for r in p_cells] == [len(r) for r in g_cells] \
            and all(math_equal_paper(a, b) for pr, gr in zip(p_cells, g_cells) for a, b in zip(pr, gr)):
        return True
    if pred.count("=") == 1 and "=" not in gold and len(pred.split("=")[0].strip()) <= 2:
        if math_equal_paper(pred.split("=")[1], gold):
            return True
    elif gold.count("=") == 1 and "=" not in pred and len(gold.split("=")[0].strip()) <= 2:
        if math_equal_paper(pred, gold.split("=")[1]):
            return True
    return _symbolic_equal(pred, gold)


def score_math_paper(prediction: str | None, reference: str, *, data_name: str = "math") -> float:
    """1.0 when the harness's answer of ``prediction`` equals the normalised gold ``reference``
    (:func:`math_equal_paper`), else 0.0. ``data_name`` is the benchmark (``minerva_math`` keeps units)."""
    if prediction is None:
        return 0.0
    skip = data_name in STRIP_EXCEPTIONS
    pred = strip_string_paper(extract_answer_paper(prediction, data_name), skip_unit=skip)
    gold = strip_string_paper(str(reference), skip_unit=skip)
    return float(math_equal_paper(pred, gold))
