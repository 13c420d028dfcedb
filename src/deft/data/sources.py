"""Record sources: the paper's three regimes, any reasoning-gym task, mixtures, and users' files.

Every source yields ``(where, record)`` pairs — or ``(where, RecordError)`` for a row that cannot
be turned into a record — so that :func:`deft.data.validate.check_records` reports problems with
their location.

* ``figfont`` — reasoning-gym ``figlet_font`` with the paper's settings (words of 2-5 letters,
  ``space_letters=True``), a system prompt asking for the word only; ``answer`` is the word.
* ``rg:<task>`` — any reasoning-gym task, with ``task_args`` passed to its config. The entry's
  metadata and the generator settings are kept under ``metadata`` so that :func:`rg_score` can use
  the task's own verifier.
* ``math`` — NuminaMath-CoT-style rows (``problem``, ``solution`` ending in ``\\boxed{...}``); the
  prompt gets :data:`MATH_PROMPT_SUFFIX`, the response is the worked solution, ``answer`` the
  content of the last ``\\boxed{}``.
* ``medical`` — m23K-style multiple-choice rows (``question``, ``options``, ``answer_idx`` letter,
  optional ``reasoning``); the response is the reasoning then ``The answer is \\boxed{X}.``
* ``mix`` — several sources in given proportions, shuffled with the seed.
* a file or dataset of records — validated and normalised.

**Train/test splits of generated tasks.** An item belongs to the test split when the SHA-256 of
its question text, read as an integer, is divisible by :data:`TEST_BUCKETS` (4), and to the train
split otherwise. Each split walks the generator's items ``0, 1, 2, ...`` for the given seed and
keeps the first ``n`` of its own split. So the same seed gives the same file, the two splits
never share a question whatever their sizes, and about a quarter of the generated items are test
items (generating ``n`` test items costs about ``4n`` generator calls).
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
from functools import lru_cache
from typing import Any, Iterable, Iterator, Mapping

from ..io import json_safe
from .readers import iter_records, iter_rows
from .records import RecordError, parse_key_map

__all__ = [
    "FIGFONT_SYSTEM_PROMPT",
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

FIGFONT_SYSTEM_PROMPT = (
    "The user shows a word drawn in an ASCII-art (FIGlet) font. Reply with the word only, in capital "
    "letters, with no spaces, punctuation or explanation."
)
FIGFONT_SETTINGS = {"min_word_len": 2, "max_word_len": 5, "space_letters": True}
MATH_PROMPT_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
MEDICAL_PROMPT_SUFFIX = "Please reason step by step, and put the letter of the correct option within \\boxed{}."
TEST_BUCKETS = 4
GENERATED_SOURCES = ("figfont", "rg")
MATH_FIELDS = ("problem", "solution", "answer", "id")
MEDICAL_FIELDS = ("question", "options", "answer_idx", "answer", "reasoning", "id")
_MEDICAL_ALIASES = {
    "question": ("question", "prompt"),
    "options": ("options", "choices"),
    "answer_idx": ("answer_idx", "answer_letter", "label"),
    "answer": ("answer", "answer_string"),
    "reasoning": ("reasoning", "rationale", "explanation"),
    "id": ("id",),
}


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
def _rg_dataset(name: str, args_json: str, seed: int, size: int):
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
    ds = _rg_dataset(task, json.dumps(args, sort_keys=True), seed, budget)
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


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, nested braces
    included; None when there is none or its braces do not close."""
    if not isinstance(text, str):
        return None
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    # "\boxed 5" (no braces) ends at whitespace or "$"
    m = list(re.finditer(r"\\boxed ([^\s$]+)", text))
    return m[-1].group(1) if m else None


def _sample(items: Iterable[tuple[str, Any]], n: int | None, seed: int) -> Iterator[tuple[str, Any]]:
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


def _pick(row: Mapping, key_map: Mapping[str, str], field: str, aliases=()) -> Any:
    if field in key_map:
        column = key_map[field]
        if column not in row:
            raise RecordError(f"missing column {column!r} (mapped to {field!r}); columns are: {', '.join(map(str, row))}")
        return row[column]
    for name in aliases or (field,):
        if name in row and row[name] is not None:
            return row[name]
    return None


def _math_record(row: Any, key_map: Mapping[str, str], suffix: str) -> dict:
    if not isinstance(row, Mapping):
        raise RecordError(f"expected a JSON object, got {type(row).__name__}")
    problem, solution = _pick(row, key_map, "problem"), _pick(row, key_map, "solution")
    for name, value in (("problem", problem), ("solution", solution)):
        if value is None:
            raise RecordError(f"missing {name!r} (columns are: {', '.join(map(str, row))}; map another with --map {name}=COLUMN)")
        if not isinstance(value, str) or not value.strip():
            raise RecordError(f"empty or non-string {name!r}")
    answer = _pick(row, key_map, "answer")
    answer = str(answer).strip() if answer is not None and str(answer).strip() else extract_boxed(solution)
    if not answer:
        raise RecordError("the solution has no \\boxed{...} final answer")
    rec = {"prompt": f"{problem.strip()}\n{suffix}" if suffix else problem.strip(), "response": solution.strip(),
           "answer": answer, "task": "math"}
    rid = _pick(row, key_map, "id")
    if isinstance(rid, (str, int)) and not isinstance(rid, bool):
        rec["id"] = rid
    if isinstance(row.get("source"), str):
        rec["metadata"] = {"source": row["source"]}
    return rec


def _rows_to_records(source, split, convert) -> Iterator[tuple[str, dict | RecordError]]:
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
    return _sample(_rows_to_records(source, split, lambda row: _math_record(row, km, prompt_suffix)), n, seed)


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
    get = {f: _pick(row, key_map, f, _MEDICAL_ALIASES[f]) for f in MEDICAL_FIELDS}
    question = get["question"]
    if not isinstance(question, str) or not question.strip():
        raise RecordError(f"missing or empty 'question' (columns are: {', '.join(map(str, row))}; map with --map question=COLUMN)")
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
    return _sample(_rows_to_records(source, split, lambda row: _medical_record(row, km, prompt_suffix)), n, seed)


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
            raise ValueError(f"mix part {spec!r}: only {got} valid records, {count} needed; lower --n or its proportion")
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
    return _sample(iter_records(source, key_map=km, keep_extra=keep_extra, split=split), n, seed)


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


def rg_score(record: Mapping, answer: str | None) -> float:
    """Score a model's ``answer`` to a generated record with the reasoning-gym task's own
    verifier (``score_answer``), in [0, 1]."""
    meta = dict(record.get("metadata") or {})
    info = meta.pop("reasoning_gym", None) or {}
    task = info.get("task")
    if not task:
        label = str(record.get("task", ""))
        task = "figlet_font" if label == "figfont" else label[3:] if label.startswith("rg:") else meta.get("source_dataset")
    if not task:
        raise ValueError(f"record {record.get('id', '')!r} is not from a reasoning-gym task (no task / metadata)")
    args = info.get("args") or (FIGFONT_SETTINGS if task == "figlet_font" else {})
    ds = _rg_dataset(task, json.dumps(args, sort_keys=True), int(info.get("seed", 0)), 1)
    prompt = record.get("prompt")
    if prompt is None and record.get("messages"):
        prompt = next((m["content"] for m in reversed(record["messages"]) if m["role"] == "user"), "")
    entry = {"question": prompt, "answer": record.get("answer"), "metadata": meta}
    return float(ds.score_answer(answer, entry))
