"""Math rows (``math``): NuminaMath-CoT-style ``problem`` / ``solution`` ending in ``\\boxed{...}``;
the prompt gets :data:`MATH_PROMPT_SUFFIX`, the response is the worked solution, ``answer`` the
content of the last ``\\boxed{}`` (:func:`deft.text.extract_boxed`, the one parser of gold
answers and predictions). Also the helpers the file-based sources share: :func:`sample` (a seeded
sample), :func:`pick` (a mapped or aliased column) and :func:`rows_to_records`.
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Iterator, Mapping

from ..text import extract_boxed
from .readers import iter_rows
from .records import RecordError, parse_key_map

__all__ = ["MATH_PROMPT_SUFFIX", "MATH_FIELDS", "math_records", "sample", "pick", "rows_to_records"]

MATH_PROMPT_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
MATH_FIELDS = ("problem", "solution", "answer", "id")


def sample(items: Iterable[tuple[str, Any]], n: int | None, seed: int) -> Iterator[tuple[str, Any]]:
    """All items when ``n`` is None; otherwise errors as they come and a seeded uniform sample of
    ``n`` valid items (reservoir sampling: memory holds ``n`` records), in their original order."""
    if n is None:
        yield from items
        return
    rng = random.Random(seed)
    reservoir: list[tuple[int, str, Any]] = []
    seen = 0
    for where, rec in items:
        if isinstance(rec, RecordError):
            yield where, rec
            continue
        if len(reservoir) < n:
            reservoir.append((seen, where, rec))
        else:
            j = rng.randrange(seen + 1)
            if j < n:
                reservoir[j] = (seen, where, rec)
        seen += 1
    for _, where, rec in sorted(reservoir, key=lambda t: t[0]):
        yield where, rec


def pick(row: Mapping, key_map: Mapping[str, str], field: str, aliases=()) -> Any:
    if field in key_map:
        column = key_map[field]
        if column not in row:
            raise RecordError(f"missing column {column!r} (mapped to {field!r}); "
                              f"columns are: {', '.join(map(str, row))}")
        return row[column]
    for name in aliases or (field,):
        if name in row and row[name] is not None:
            return row[name]
    return None


def _math_record(row: Any, key_map: Mapping[str, str], suffix: str) -> dict:
    if not isinstance(row, Mapping):
        raise RecordError(f"expected a JSON object, got {type(row).__name__}")
    problem, solution = pick(row, key_map, "problem"), pick(row, key_map, "solution")
    for name, value in (("problem", problem), ("solution", solution)):
        if value is None:
            raise RecordError(f"missing {name!r} (columns are: {', '.join(map(str, row))}; "
                              f"map another with --map {name}=COLUMN)")
        if not isinstance(value, str) or not value.strip():
            raise RecordError(f"empty or non-string {name!r}")
    answer = pick(row, key_map, "answer")
    answer = str(answer).strip() if answer is not None and str(answer).strip() else extract_boxed(solution)
    if not answer:
        raise RecordError("the solution has no \\boxed{...} final answer")
    rec = {"prompt": f"{problem.strip()}\n{suffix}" if suffix else problem.strip(), "response": solution.strip(),
           "answer": answer, "task": "math"}
    rid = pick(row, key_map, "id")
    if isinstance(rid, (str, int)) and not isinstance(rid, bool):
        rec["id"] = rid
    if isinstance(row.get("source"), str):
        rec["metadata"] = {"source": row["source"]}
    return rec


def rows_to_records(source, split, convert) -> Iterator[tuple[str, dict | RecordError]]:
    for where, row in iter_rows(source, split=split):
        if isinstance(row, RecordError):
            yield where, row
            continue
        try:
            yield where, convert(row)
        except RecordError as err:
            yield where, err.at(where)


def math_records(
    source: str, *, n: int | None = None, seed: int = 0, split: str = "train",
    key_map: Mapping[str, str] | None = None, prompt_suffix: str = MATH_PROMPT_SUFFIX,
) -> Iterator[tuple[str, dict | RecordError]]:
    """Math records from NuminaMath-CoT-style rows of a file or dataset (fields ``problem``,
    ``solution``, optional ``answer`` and ``id``; rename with ``key_map``). With ``n``, a seeded
    sample of ``n`` rows."""
    km = parse_key_map(key_map, MATH_FIELDS)
    return sample(rows_to_records(source, split, lambda row: _math_record(row, km, prompt_suffix)), n, seed)
