"""The medical suite: the m1 evaluation file behind the paper's Table 2.

The file is JSON: a list of items, or a dict from source name (MedMCQA, MedQA, PubMedQA, MMLU-Pro,
GPQA, Lancet, MedBullets, MedXpertQA, NEJM, ...) to a list of items. An item has ``prompt`` (the
question with its options written out), ``options`` (``{letter: text}``) and ``answer_idx`` (the
gold letter); items of a list are grouped by their ``source`` field (``all`` when absent).

:func:`read_medical` returns one problem list per source; ``deft eval --benchmark medical:FILE``
reports a row per source (``medical/<source>``) and their mean (``medical``), as the reference's
medical evaluation does. The prompt asks for a boxed answer (the reference's wording); the scorer is
``mcq`` (``mcq_paper`` under ``--protocol paper``) with the item's options as context.
"""

from __future__ import annotations

import json
from pathlib import Path

from .problem import MATH_PROMPT_SUFFIX, Problem

__all__ = ["MEDICAL_PREFIX", "read_medical"]

MEDICAL_PREFIX = "medical:"


def _load(path: Path) -> dict[str, list]:
    if not path.is_file():
        raise FileNotFoundError(f"medical evaluation file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                         "re-save it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); the m1 file is a JSON list or a "
                         "dict of source -> list") from None
    if isinstance(data, list):
        groups: dict[str, list] = {}
        for i, item in enumerate(data):
            source = item.get("source", "all") if isinstance(item, dict) else "all"
            groups.setdefault(str(source), []).append((i, item))
        return groups
    if isinstance(data, dict):
        for name, items in data.items():
            if not isinstance(items, list):
                raise ValueError(f"{path}: source {name!r} must hold a list of items, got {type(items).__name__}")
        return {str(name): list(enumerate(items)) for name, items in data.items()}
    raise ValueError(f"{path}: expected a JSON list of items or a dict of source -> list, got {type(data).__name__}")


def _problem(path: Path, source: str, number: int, item, scorer: str) -> Problem:
    where = f"{path}: {source} item {number}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object with prompt, options, answer_idx")
    missing = [k for k in ("prompt", "options", "answer_idx") if k not in item]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; fields present: {sorted(item)}")
    options = item["options"]
    if not isinstance(options, dict) or not options:
        raise ValueError(f"{where}: 'options' must be an object {{letter: text}}")
    answer = str(item["answer_idx"]).strip()
    if answer.upper() not in {str(k).upper() for k in options}:
        raise ValueError(f"{where}: answer_idx {answer!r} is not one of the options {sorted(options)}")
    return Problem(
        benchmark=f"medical/{source}", id=str(item.get("id", number)),
        prompt=f"{str(item['prompt']).strip()}\n{MATH_PROMPT_SUFFIX}", reference=answer, scorers=(scorer,),
        context={"options": {str(k): str(v) for k, v in options.items()}},
    )


def read_medical(path: str | Path, *, scorer: str = "mcq", limit: int | None = None) -> dict[str, list[Problem]]:
    """``{source: problems}`` from an m1 evaluation file (see the module docstring); ``limit``
    keeps the first problems of each source. Each problem's prompt is the item's ``prompt``, a
    newline and :data:`~deft.eval.problem.MATH_PROMPT_SUFFIX`."""
    path = Path(path)
    out: dict[str, list[Problem]] = {}
    for source, items in _load(path).items():
        problems = [_problem(path, source, n, item, scorer) for n, item in items[:limit]]
        if problems:
            out[source] = problems
    if not out:
        raise ValueError(f"{path}: no items")
    return out
