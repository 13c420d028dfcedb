"""Medical multiple-choice rows (``medical``): m23K-style ``question``, ``options``, ``answer_idx``
letter, optional ``reasoning``; the response is the reasoning then ``The answer is \\boxed{X}.``
(The reference's medical records are ``--protocol paper``: :mod:`deft.data.paper`.)
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Iterator, Mapping

from .records import RecordError, parse_key_map
from .sources_math import pick, rows_to_records, sample

__all__ = ["MEDICAL_PROMPT_SUFFIX", "MEDICAL_FIELDS", "medical_records"]

MEDICAL_PROMPT_SUFFIX = "Please reason step by step, and put the letter of the correct option within \\boxed{}."
MEDICAL_FIELDS = ("question", "options", "answer_idx", "answer", "reasoning", "id")
_MEDICAL_ALIASES = {
    "question": ("question", "prompt"),
    "options": ("options", "choices"),
    "answer_idx": ("answer_idx", "answer_letter", "label"),
    "answer": ("answer", "answer_string"),
    "reasoning": ("reasoning", "rationale", "explanation"),
    "id": ("id",),
}


def _parse_options(options: Any) -> dict[str, str]:
    if isinstance(options, str):
        text = options.strip()
        parsed = None
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(text)
                break
            except (ValueError, SyntaxError):
                continue
        if parsed is None:
            # "A. foo\nB. bar" style
            found = re.findall(r"^\s*\(?([A-Z])[.):]\s*(.+?)\s*$", text, flags=re.M)
            if not found:
                raise RecordError("could not read 'options' (expected a dict, a list or 'A. ...' lines)")
            parsed = dict(found)
        options = parsed
    if isinstance(options, Mapping):
        out = {str(k).strip().upper(): str(v).strip() for k, v in options.items() if v is not None and str(v).strip()}
    elif isinstance(options, (list, tuple)):
        out = {chr(65 + i): str(v).strip() for i, v in enumerate(options)}
    else:
        raise RecordError(f"'options' must be a dict or a list (got {type(options).__name__})")
    if len(out) < 2:
        raise RecordError("'options' has fewer than two choices")
    return dict(sorted(out.items()))


def _medical_record(row: Any, key_map: Mapping[str, str], suffix: str) -> dict:
    if not isinstance(row, Mapping):
        raise RecordError(f"expected a JSON object, got {type(row).__name__}")
    get = {f: pick(row, key_map, f, _MEDICAL_ALIASES[f]) for f in MEDICAL_FIELDS}
    question = get["question"]
    if not isinstance(question, str) or not question.strip():
        raise RecordError(f"missing or empty 'question' (columns are: {', '.join(map(str, row))}; "
                          "map with --map question=COLUMN)")
    options = _parse_options(get["options"]) if get["options"] is not None else None
    letter = get["answer_idx"]
    text = get["answer"]
    if isinstance(letter, str) and letter.strip():
        letter = letter.strip().strip("().").upper()
    elif isinstance(letter, int) and not isinstance(letter, bool) and options:
        letter = list(options)[letter] if 0 <= letter < len(options) else None
    else:
        letter = None
    if letter is None and isinstance(text, str) and options:
        matches = [k for k, v in options.items() if v.strip().lower() == text.strip().lower()]
        letter = matches[0] if len(matches) == 1 else None
    if not letter:
        raise RecordError("no answer letter: need 'answer_idx' (e.g. \"C\") or an 'answer' equal to one option's text")
    if options is not None and letter not in options:
        raise RecordError(f"answer letter {letter!r} is not one of the options {', '.join(options)}")
    if options is None and not re.fullmatch(r"[A-Z]", letter):
        raise RecordError(f"answer letter {letter!r} is not a single capital letter")
    prompt = question.strip()
    if options:
        prompt += "\n\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
    if suffix:
        prompt += f"\n\n{suffix}"
    reasoning = get["reasoning"]
    final = f"The answer is \\boxed{{{letter}}}."
    response = f"{reasoning.strip()}\n\n{final}" if isinstance(reasoning, str) and reasoning.strip() else final
    rec = {"prompt": prompt, "response": response, "answer": letter, "task": "medical"}
    if isinstance(get["id"], (str, int)) and not isinstance(get["id"], bool):
        rec["id"] = get["id"]
    meta = {}
    if options:
        meta["options"] = options
    if options and letter in options:
        meta["answer_text"] = options[letter]
    elif isinstance(text, str):
        meta["answer_text"] = text
    if meta:
        rec["metadata"] = meta
    return rec


def medical_records(
    source: str, *, n: int | None = None, seed: int = 0, split: str = "train",
    key_map: Mapping[str, str] | None = None, prompt_suffix: str = MEDICAL_PROMPT_SUFFIX,
) -> Iterator[tuple[str, dict | RecordError]]:
    """Multiple-choice records from m23K-style rows (``question``, ``options`` as a dict, a list or
    a string of either, ``answer_idx`` letter or ``answer`` text, optional ``reasoning``; common
    alternative names are recognised, others mapped with ``key_map``). With ``n``, a seeded
    sample."""
    km = parse_key_map(key_map, MEDICAL_FIELDS)
    return sample(rows_to_records(source, split, lambda row: _medical_record(row, km, prompt_suffix)), n, seed)
