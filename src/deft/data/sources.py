"""Record sources: one entry point (:func:`source_records`) for the paper's three regimes, any
reasoning-gym task, mixtures and users' files.

Every source yields ``(where, record)`` pairs — or ``(where, RecordError)`` for a row that cannot
be turned into a record — so that :func:`deft.data.validate.check_records` reports problems with
their location.

* ``figfont``, ``rg:<task>`` — generated (:mod:`deft.data.sources_rg`);
* ``math`` — NuminaMath-CoT-style rows (:mod:`deft.data.sources_math`);
* ``medical`` — m23K-style multiple-choice rows (:mod:`deft.data.sources_medical`);
* ``mix`` — several sources in given proportions, shuffled with the seed (here);
* a file or dataset of records — validated and normalised (:mod:`deft.data.readers`);
* with ``protocol="paper"``, ``figfont``, ``math`` and ``medical`` exactly as the paper's reference
  builds them (:mod:`deft.data.paper`).
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Mapping

from ..text import extract_boxed
from .readers import iter_records
from .records import RecordError, parse_key_map
from .sources_math import MATH_FIELDS, MATH_PROMPT_SUFFIX, math_records, sample
from .sources_medical import MEDICAL_FIELDS, MEDICAL_PROMPT_SUFFIX, medical_records
from .sources_rg import (
    FIGFONT_SETTINGS,
    FIGFONT_SYSTEM_PROMPT,
    TEST_BUCKETS,
    figfont_records,
    parse_task_args,
    question_split,
    rg_records,
    rg_score,
)

__all__ = [
    "FIGFONT_SYSTEM_PROMPT",
    "FIGFONT_SETTINGS",
    "MATH_PROMPT_SUFFIX",
    "MEDICAL_PROMPT_SUFFIX",
    "TEST_BUCKETS",
    "GENERATED_SOURCES",
    "MATH_FIELDS",
    "MEDICAL_FIELDS",
    "question_split",
    "parse_task_args",
    "rg_records",
    "figfont_records",
    "extract_boxed",
    "math_records",
    "medical_records",
    "parse_mix_part",
    "mix_records",
    "source_records",
    "rg_score",
]

GENERATED_SOURCES = ("figfont", "rg")


def parse_mix_part(text: str) -> tuple[str, float]:
    """``"SPEC=PROPORTION"`` -> ``(SPEC, proportion)``; SPEC is ``figfont``, ``rg:<task>``,
    ``math:<file>``, ``medical:<file>`` or a file/dataset of records."""
    if "=" not in text:
        raise ValueError(f"--part {text!r}: expected SPEC=PROPORTION, e.g. figfont=0.5")
    spec, value = text.rsplit("=", 1)
    try:
        proportion = float(value)
    except ValueError:
        raise ValueError(f"--part {text!r}: {value!r} is not a number") from None
    if not proportion > 0:
        raise ValueError(f"--part {text!r}: the proportion must be positive")
    return spec.strip(), proportion


def _counts(n: int, proportions: list[float]) -> list[int]:
    total = sum(proportions)
    exact = [n * p / total for p in proportions]
    counts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def mix_records(
    parts: list[tuple[str, float]], *, n: int, seed: int = 0, split: str = "train", **options
) -> Iterator[tuple[str, dict | RecordError]]:
    """``n`` records drawn from several sources in the given proportions (largest-remainder
    rounding), each part with the same seed, then shuffled with the seed. ``options`` are passed
    to each part's source (see :func:`source_records`). Holds the ``n`` records in memory."""
    if not parts:
        raise ValueError("mix needs at least one --part SPEC=PROPORTION")
    if not n or n <= 0:
        raise ValueError("mix needs --n (the total number of records)")
    chosen: list[tuple[str, dict]] = []
    for (spec, _), count in zip(parts, _counts(n, [p for _, p in parts])):
        if count == 0:
            continue
        got = 0
        for where, rec in source_records(spec, n=count, seed=seed, split=split, **options):
            if isinstance(rec, RecordError):
                yield where, rec
                continue
            chosen.append((where, rec))
            got += 1
        if got < count:
            raise ValueError(f"mix part {spec!r}: only {got} valid records, {count} needed; "
                             "lower --n or its proportion")
    random.Random(seed).shuffle(chosen)
    yield from chosen


def source_records(
    source: str,
    *,
    input: str | None = None,
    n: int | None = None,
    seed: int = 0,
    split: str = "train",
    task_args: Mapping[str, Any] | None = None,
    key_map: Mapping[str, str] | None = None,
    system: str | None = None,
    prompt_suffix: str | None = None,
    parts: list[tuple[str, float]] | None = None,
    keep_extra: bool = False,
    protocol: str = "deft",
    model_key: str | None = None,
    model: str | None = None,
) -> Iterator[tuple[str, dict | RecordError]]:
    """One entry point for every source name (see the module docstring). ``input`` is the file or
    dataset id of ``math``, ``medical`` and ``jsonl`` (also written ``math:<file>``); generated
    sources need ``n``; ``system`` replaces a generated task's system prompt. ``protocol="paper"``
    builds ``figfont``, ``math`` and ``medical`` as the reference does (:mod:`deft.data.paper`; the
    family from ``model_key`` or ``model``)."""
    name, _, arg = source.partition(":")
    if protocol == "paper":
        return _paper_records(name, arg or input, n=n, split=split, key_map=key_map, model_key=model_key, model=model)
    if protocol != "deft":
        raise ValueError(f"--protocol {protocol!r}: use deft or paper")
    if name == "rg" or name == "figfont":
        if n is None:
            raise ValueError(f"{source} needs --n (how many records to generate)")
        if name == "figfont":
            return figfont_records(n=n, seed=seed, split=split, task_args=task_args,
                                   system=FIGFONT_SYSTEM_PROMPT if system is None else system)
        if not arg:
            raise ValueError("rg needs a task name: rg:<task>, e.g. rg:figlet_font")
        return rg_records(arg, n=n, seed=seed, split=split, task_args=task_args, system=system)
    if name in ("math", "medical"):
        path = arg or input
        if not path:
            raise ValueError(f"{name} needs an input file or dataset id (deft data {name} FILE ...)")
        if name == "math":
            suffix = MATH_PROMPT_SUFFIX if prompt_suffix is None else prompt_suffix
            return math_records(path, n=n, seed=seed, split=split, key_map=key_map, prompt_suffix=suffix)
        suffix = MEDICAL_PROMPT_SUFFIX if prompt_suffix is None else prompt_suffix
        return medical_records(path, n=n, seed=seed, split=split, key_map=key_map, prompt_suffix=suffix)
    if name == "mix":
        return mix_records(parts or [], n=n, seed=seed, split=split, task_args=task_args, key_map=key_map,
                           system=system, prompt_suffix=prompt_suffix, keep_extra=keep_extra)
    if name in ("jsonl", "json", "parquet", "generic", "records"):
        if not (arg or input):
            raise ValueError(f"{name} needs an input file or dataset id (deft data {name} FILE ...)")
        source = arg or input
    km = parse_key_map(key_map)
    return sample(iter_records(source, key_map=km, keep_extra=keep_extra, split=split), n, seed)


def _paper_records(name, path, *, n, split, key_map, model_key, model):
    from .paper import figfont_paper_records, math_paper_records, medical_paper_records, require_family

    if name == "figfont":
        return figfont_paper_records(split, n=n)
    if name not in ("math", "medical"):
        raise ValueError(f"--protocol paper builds figfont, math and medical; {name!r} has no paper protocol")
    if not path:
        raise ValueError(f"{name} needs an input file or dataset id (deft data {name} FILE --protocol paper ...)")
    family = require_family(name, model_key=model_key, model=model)
    build = math_paper_records if name == "math" else medical_paper_records
    return build(path, family, n=n, split=split, key_map=key_map)
