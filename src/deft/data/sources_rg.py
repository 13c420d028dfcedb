"""Generated sources: any reasoning-gym task (``rg:<task>``) and FigFont (``figfont``), with
deft's train/test split, and scoring with the task's own verifier.

* ``figfont`` — reasoning-gym ``figlet_font`` with the paper's settings (words of 2-5 letters,
  ``space_letters=True``), a system prompt asking for the word only; ``answer`` is the word. (The
  reference's exact items and prompts are ``--protocol paper``: :mod:`deft.data.paper`.)
* ``rg:<task>`` — any reasoning-gym task, with ``task_args`` passed to its config. The entry's
  metadata and the generator settings are kept under ``metadata`` so that :func:`rg_score` can use
  the task's own verifier.

**Train/test splits.** An item belongs to the test split when the SHA-256 of its question text,
read as an integer, is divisible by :data:`TEST_BUCKETS` (4), and to the train split otherwise.
Each split walks the generator's items ``0, 1, 2, ...`` for the given seed and keeps the first
``n`` of its own split. So the same seed gives the same file, the two splits never share a
question whatever their sizes, and about a quarter of the generated items are test items
(generating ``n`` test items costs about ``4n`` generator calls).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any, Iterable, Iterator, Mapping

from ..io import json_safe
from .records import RecordError

__all__ = ["FIGFONT_SYSTEM_PROMPT", "FIGFONT_SETTINGS", "TEST_BUCKETS", "question_split", "parse_task_args",
           "rg_records", "figfont_records", "rg_score"]

FIGFONT_SYSTEM_PROMPT = (
    "The user shows a word drawn in an ASCII-art (FIGlet) font. Reply with the word only, in capital "
    "letters, with no spaces, punctuation or explanation."
)
FIGFONT_SETTINGS = {"min_word_len": 2, "max_word_len": 5, "space_letters": True}
TEST_BUCKETS = 4


def question_split(question: str) -> str:
    """``"test"`` or ``"train"`` for a generated question (see the module docstring)."""
    digest = int(hashlib.sha256(question.encode("utf-8")).hexdigest(), 16)
    return "test" if digest % TEST_BUCKETS == 0 else "train"


def parse_task_args(items: Iterable[str] | Mapping | None) -> dict[str, Any]:
    """Parse ``["min_word_len=2", "space_letters=true"]`` into a dict; values are read as JSON
    (numbers, booleans, lists) when they parse, else kept as strings."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--task-args {item!r}: expected KEY=VALUE, e.g. min_word_len=2")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise ValueError(f"--task-args {item!r}: {key!r} is not a parameter name")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            low = value.strip().lower()
            out[key] = {"true": True, "false": False, "none": None}.get(low, value)
    return out


@lru_cache(maxsize=32)
def rg_dataset(name: str, args_json: str, seed: int, size: int):
    """The reasoning-gym dataset ``name`` built with the JSON-encoded ``args_json``, ``seed`` and
    ``size`` (cached: the arguments are hashable strings and numbers)."""
    import reasoning_gym

    args = json.loads(args_json)
    try:
        return reasoning_gym.create_dataset(name, seed=seed, size=size, **args)
    except ValueError as err:
        if "not registered" in str(err):
            from reasoning_gym.factory import DATASETS

            close = [t for t in sorted(DATASETS) if name.replace("-", "_") in t or t in name][:5]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown reasoning-gym task {name!r}{hint}; see reasoning_gym.factory.DATASETS") from None
        raise ValueError(f"reasoning-gym task {name!r}: {err}") from None
    except (TypeError, AssertionError) as err:
        raise ValueError(f"reasoning-gym task {name!r}: bad --task-args {args} ({err})") from None


def rg_records(
    task: str,
    *,
    n: int,
    seed: int = 0,
    split: str = "train",
    task_args: Mapping[str, Any] | None = None,
    system: str | None = None,
    label: str | None = None,
) -> Iterator[tuple[str, dict | RecordError]]:
    """Records from a reasoning-gym task: prompt = the question, response = answer = the task's
    answer. ``split`` is ``train`` or ``test`` (see the module docstring); ``label`` is the
    record's ``task`` (default ``rg:<task>``)."""
    if split not in ("train", "test"):
        raise ValueError(f"--split {split!r}: generated tasks have the splits train and test")
    if n <= 0:
        raise ValueError(f"--n must be positive (got {n})")
    args = dict(task_args or {})
    budget = n * (TEST_BUCKETS if split == "test" else 2) * 2 + 64
    ds = rg_dataset(task, json.dumps(args, sort_keys=True), seed, budget)
    label = label or f"rg:{task}"
    found = 0
    for idx in range(budget):
        entry = ds[idx]
        question = entry["question"]
        if question_split(question) != split:
            continue
        where = f"{label}[{split},seed={seed}]#{idx}"
        found += 1
        answer = entry.get("answer")
        if answer is None or not str(answer).strip():
            yield where, RecordError(f"{task} item {idx} has no reference answer to train on", where)
        else:
            meta = json_safe(entry.get("metadata") or {})
            meta["reasoning_gym"] = {"task": task, "args": json_safe(args), "seed": seed, "index": idx}
            rec = {"prompt": question, "response": str(answer)}
            if system:
                rec["system"] = system
            rec.update({"answer": str(answer), "task": label, "id": f"{task}-{split}-{seed}-{idx}", "metadata": meta})
            yield where, rec
        if found >= n:
            return
    raise ValueError(
        f"{task}: only {found} {split} questions among the first {budget} items for seed {seed}; lower --n "
        f"(the task may have few distinct questions)"
    )


def figfont_records(
    *, n: int, seed: int = 0, split: str = "train", task_args: Mapping[str, Any] | None = None,
    system: str | None = FIGFONT_SYSTEM_PROMPT,
) -> Iterator[tuple[str, dict | RecordError]]:
    """FigFont puzzles: reasoning-gym ``figlet_font`` with words of 2-5 letters and
    ``space_letters=True`` (``task_args`` override), task ``figfont``, answer = the word."""
    args = {**FIGFONT_SETTINGS, **dict(task_args or {})}
    return rg_records("figlet_font", n=n, seed=seed, split=split, task_args=args, system=system, label="figfont")


def rg_score(record: Mapping, answer: str | None) -> float:
    """Score a model's ``answer`` to a generated record with the reasoning-gym task's own
    verifier (``score_answer``), in [0, 1]."""
    meta = dict(record.get("metadata") or {})
    info = meta.pop("reasoning_gym", None) or {}
    task = info.get("task")
    if not task:
        label = str(record.get("task", ""))
        task = ("figlet_font" if label == "figfont" else label[3:] if label.startswith("rg:")
                else meta.get("source_dataset"))
    if not task:
        raise ValueError(f"record {record.get('id', '')!r} is not from a reasoning-gym task (no task / metadata)")
    args = info.get("args") or (FIGFONT_SETTINGS if task == "figlet_font" else {})
    ds = rg_dataset(task, json.dumps(args, sort_keys=True), int(info.get("seed", 0)), 1)
    prompt = record.get("prompt")
    if prompt is None and record.get("messages"):
        prompt = next((m["content"] for m in reversed(record["messages"]) if m["role"] == "user"), "")
    entry = {"question": prompt, "answer": record.get("answer"), "metadata": meta}
    return float(ds.score_answer(answer, entry))
