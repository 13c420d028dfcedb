"""Benchmark readers: each returns a list of :class:`Problem` (prompt, gold reference, scorer names).

* Math — ``math500``, ``aime24``, ``amc23``, ``minerva_math``, ``olympiadbench``, ``gsm8k`` from
  ``<data_dir>/<name>/test.jsonl`` (the Qwen2.5-Math evaluation layout), each with its own fields.
  The prompt is the problem followed by :data:`MATH_PROMPT_SUFFIX`; the scorer is ``math``.
* ``figfont`` — reasoning-gym ``figlet_font`` puzzles (words of 2-5 letters, ``space_letters=True``),
  scored by ``exact`` and ``jaro_winkler``.
* ``rg:<task>`` — any reasoning-gym task, scored by the task's own ``score_answer``.
* A record file — JSONL with ``prompt`` or ``messages``, and ``answer``, with an explicit scorer.

reasoning-gym builds item ``i`` from ``Random(seed + i)``, so an evaluation set generated with seed
``s`` and size ``m`` shares items with a training set (seed ``t``, size ``N``) whenever the ranges
``[s, s + m)`` and ``[t, t + N)`` overlap. The default evaluation seed, :data:`DEFAULT_EVAL_SEED`,
is far from the small seeds used for training data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..text import extract_boxed
from .problem import MATH_PROMPT_SUFFIX, Problem, RawPrompt
from .scorers import check_scorer, scorer_names

__all__ = [
    "BENCHMARKS", "BENCHMARK_REGISTRY", "Benchmark", "DEFAULT_EVAL_SEED", "MATH_BENCHMARKS", "MATH_PROMPT_SUFFIX",
    "Problem", "RawPrompt", "benchmark_names", "figfont_problems", "find_benchmark", "list_benchmarks",
    "load_benchmark", "read_math_benchmark", "read_records", "register_benchmark", "rg_problems",
    "unregister_benchmark",
]

DEFAULT_EVAL_SEED = 1_000_000_000

# benchmark -> (question field, answer field, how the answer field holds the gold)
MATH_BENCHMARKS: dict[str, tuple[str, str, str]] = {
    "math500": ("problem", "answer", "plain"),
    "aime24": ("problem", "answer", "plain"),
    "amc23": ("question", "answer", "plain"),
    "minerva_math": ("problem", "solution", "boxed"),
    "olympiadbench": ("question", "final_answer", "list"),
    "gsm8k": ("question", "answer", "hashes"),
}



def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # amc23 stores 27.0
    return str(value).strip()


def _gold(kind: str, value: Any, where: str) -> str:
    if kind == "plain":
        return _as_text(value)
    if kind == "hashes":  # GSM8K: "...reasoning...\n#### 1,000"
        text = str(value)
        if "####" not in text:
            raise ValueError(f"{where}: a GSM8K answer needs '#### <number>'")
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    if kind == "boxed":
        boxed = extract_boxed(str(value))
        if boxed is None:
            raise ValueError(f"{where}: the solution has no \\boxed{{...}} answer")
        return boxed
    if kind == "list":  # OlympiadBench: ["$\\frac{1}{2}$"]; several parts are joined as a tuple/set
        parts = value if isinstance(value, list) else [value]
        parts = [_as_text(p).strip("$").strip() for p in parts]
        if not parts or not any(parts):
            raise ValueError(f"{where}: empty final_answer")
        return ", ".join(p for p in parts if p)
    raise AssertionError(kind)


def _with_suffix(question: str, suffix: str | None) -> str:
    question = question.strip()
    return f"{question}\n{suffix}" if suffix else question


def read_math_benchmark(name: str, data_dir: str | Path, *, limit: int | None = None,
                        prompt_suffix: str | None = MATH_PROMPT_SUFFIX) -> list[Problem]:
    """Problems of a math benchmark from ``<data_dir>/<name>/test.jsonl``.

    Fields (those of the Qwen2.5-Math evaluation files): ``math500`` problem/answer, ``aime24``
    problem/answer, ``amc23`` question/answer (``27.0`` -> ``27``), ``minerva_math`` problem and the
    boxed answer of solution, ``olympiadbench`` question/final_answer (a list; ``$`` stripped, several
    parts joined by ", "), ``gsm8k`` question and the number after ``####`` (commas removed).
    The prompt is the question, a newline and ``prompt_suffix`` (none when empty). ``limit`` keeps
    the first problems.
    """
    if name not in MATH_BENCHMARKS:
        raise ValueError(f"unknown math benchmark {name!r}; valid: {', '.join(MATH_BENCHMARKS)}")
    path = Path(data_dir) / name / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --data-dir must hold <name>/test.jsonl "
                                "(the Qwen2.5-Math evaluation data layout)")
    q_field, a_field, kind = MATH_BENCHMARKS[name]
    problems = []
    for lineno, rec in _jsonl(path):
        where = f"{path}:{lineno}"
        missing = [f for f in (q_field, a_field) if f not in rec]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing} for {name}; fields present: {sorted(rec)}")
        pid = rec.get("id", rec.get("idx", rec.get("unique_id", lineno)))
        problems.append(Problem(
            benchmark=name, id=str(pid), prompt=_with_suffix(str(rec[q_field]), prompt_suffix),
            reference=_gold(kind, rec[a_field], where), scorers=("math",),
        ))
        if limit is not None and len(problems) >= limit:
            break
    return problems


def rg_problems(task: str, *, size: int = 100, seed: int = DEFAULT_EVAL_SEED, benchmark: str | None = None,
                scorers: tuple[str, ...] | None = None, start: int = 0, **config: Any) -> list[Problem]:
    """Items ``start .. start + size - 1`` of the reasoning-gym task ``task`` (``seed`` and
    ``config`` go to ``reasoning_gym.create_dataset``; item ``i`` is the same whatever the dataset's
    size). The prompt is the item's question, the reference its answer, the scorer ``rg:<task>``
    unless ``scorers`` are given; the item is kept as ``entry``."""
    import reasoning_gym

    name = f"rg:{task}"
    check_scorer(name)
    ds = reasoning_gym.create_dataset(task, size=size, seed=seed, **config)
    out = []
    for i in range(start, start + size):
        item = ds[i]
        out.append(Problem(
            benchmark=benchmark or name, id=f"{task}-{seed}-{i}", prompt=str(item["question"]),
            reference=str(item["answer"]), scorers=scorers or (name,), entry=item,
        ))
    return out


def figfont_problems(*, size: int = 256, seed: int = DEFAULT_EVAL_SEED, min_word_len: int = 2,
                     max_word_len: int = 5) -> list[Problem]:
    """FigFont puzzles: reasoning-gym ``figlet_font`` with words of ``min_word_len``-``max_word_len``
    letters and ``space_letters=True`` (the paper's model-weak regime). Scorers: ``exact`` (primary)
    and ``jaro_winkler`` against the word."""
    return rg_problems("figlet_font", size=size, seed=seed, benchmark="figfont",
                       scorers=("exact", "jaro_winkler"), min_word_len=min_word_len,
                       max_word_len=max_word_len, space_letters=True)


def _record_problem(rec: dict, where: str, number: int, scorer: str, benchmark: str) -> Problem:
    """One evaluation problem from a normalised record (:func:`deft.data.normalize_record`)."""
    if "answer" in rec:
        reference = rec["answer"]
    elif "response" in rec or rec.get("messages", [{}])[-1].get("role") == "assistant":
        reference = rec.get("response") or rec["messages"][-1]["content"]  # the training target
    else:
        raise ValueError(f"{where}: an evaluation record needs 'answer' (or a response to compare with)")
    system = rec.get("system")
    if "messages" in rec:
        msgs = list(rec["messages"])
        if msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        users = [m for m in msgs if m["role"] == "user"]
        if not users:
            raise ValueError(f"{where}: the conversation has no user turn")
        if system and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": str(system)})
        messages, prompt = tuple(dict(m) for m in msgs), str(users[-1]["content"])
    else:
        prompt = str(rec["prompt"])
        messages = ({"role": "system", "content": str(system)}, {"role": "user", "content": prompt}) if system else None
    entry = None
    if rec.get("metadata"):
        entry = {"question": prompt, "answer": reference, "metadata": rec["metadata"]}
    return Problem(benchmark=benchmark, id=str(rec.get("id", number)), prompt=prompt, reference=_as_text(reference),
                   scorers=(scorer,), messages=messages, entry=entry)


def read_records(path: str | Path, scorer: str, *, limit: int | None = None, benchmark: str | None = None,
                 key_map: Mapping[str, str] | Sequence[str] | None = None) -> list[Problem]:
    """Problems from a file of records, read by the data layer's one reader
    (:func:`deft.data.iter_records`: JSONL, JSON, Parquet, CSV, ``save_to_disk`` folders; deft's,
    TRL's prompt/completion, messages, Alpaca and ShareGPT shapes; ``key_map`` as ``--map``).

    The prompt is the record's ``prompt`` (or the last user turn of ``messages``, a trailing
    assistant turn dropped) with its ``system`` prompt; the reference is ``answer``, else the
    response. Optional ``id``; ``metadata`` (the reasoning-gym entry for ``rg:<task>`` scorers).
    ``scorer`` names the scorer for every record (checked first). A bad record is a one-line error
    naming ``FILE:LINE``.
    """
    from ..data import RecordError, iter_records

    check_scorer(scorer)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"record file {path} not found")
    problems = []
    for number, (where, rec) in enumerate(iter_records(path, key_map=key_map, require_response=False), 1):
        if isinstance(rec, RecordError):
            raise ValueError(str(rec)) from None
        problems.append(_record_problem(rec, where, number, scorer, benchmark or path.stem))
        if limit is not None and len(problems) >= limit:
            break
    return problems


# ---------------------------------------------------------------- the benchmark registry


@dataclass(frozen=True)
class Benchmark:
    """Everything about one named benchmark, declared once with :func:`register_benchmark`.

    ``reader(key, *, data_dir, limit, size, seed, prompt_suffix, **config)`` returns the problems (or
    ``{source: problems}``, one result row per source followed by their mean, as the medical suite);
    ``key`` is the benchmark name, or the part after the colon for a benchmark with an ``argument``
    (``rg:<task>``, ``medical:<file>``). ``scorer`` is the default (primary) scorer, ``regime``
    the ``--protocol paper`` preset that applies (``math``, ``figfont``, ``medical`` or ``other``),
    ``data_dir`` whether it reads ``<data-dir>/<name>/test.jsonl``, ``help`` its line in
    ``deft eval --help``. An ``argument`` named ``file`` is a path: the settings hash of
    ``deft eval --out`` covers its bytes, as it covers the ``data_dir`` files.
    """

    name: str
    reader: Callable[..., list[Problem] | dict[str, list[Problem]]]
    help: str
    scorer: str = "math"
    regime: str = "other"
    argument: str | None = None
    data_dir: bool = False

    @property
    def spec(self) -> str:
        """The name as the user writes it: ``math500``, ``rg:<task>``."""
        return f"{self.name}:<{self.argument}>" if self.argument else self.name


BENCHMARK_REGISTRY: dict[str, Benchmark] = {}
REGIMES = ("math", "figfont", "medical", "other")


def register_benchmark(name: str, reader: Callable[..., Any], help: str, **fields: Any) -> Benchmark:
    """Declare a benchmark (see :class:`Benchmark` for the fields); it then appears in
    ``deft eval --help``, :func:`list_benchmarks` and is read by :func:`load_benchmark` and
    ``deft eval --benchmark NAME``. Returns the declaration."""
    if name in BENCHMARK_REGISTRY:
        raise ValueError(f"benchmark '{name}' is already registered")
    if not name or ":" in name or "/" in name:
        raise ValueError(f"benchmark name {name!r}: a non-empty name without ':' or '/' (use argument= for "
                         "'name:<arg>')")
    decl = Benchmark(name=name, reader=reader, help=help, **fields)
    if decl.regime not in REGIMES:
        raise ValueError(f"benchmark '{name}': regime must be one of {', '.join(REGIMES)}, got {decl.regime!r}")
    BENCHMARK_REGISTRY[name] = decl
    return decl


def unregister_benchmark(name: str) -> None:
    """Remove a benchmark declared with :func:`register_benchmark`."""
    BENCHMARK_REGISTRY.pop(name, None)


def benchmark_names() -> list[str]:
    """Every benchmark as the user writes it (``rg:<task>``), in declaration order."""
    return [b.spec for b in BENCHMARK_REGISTRY.values()]


def list_benchmarks() -> dict[str, str]:
    """Map every benchmark (as written, ``rg:<task>``) to its help line."""
    return {b.spec: b.help for b in BENCHMARK_REGISTRY.values()}


def find_benchmark(name: str) -> tuple[Benchmark, str] | None:
    """The declaration of benchmark ``name`` and the key its reader gets (the name, or the part after
    the colon: ``rg:countdown`` -> the ``rg`` benchmark and ``"countdown"``); ``None`` when ``name``
    is no registered benchmark (a record file). ``medical:`` with nothing after it gives ``""``."""
    decl = BENCHMARK_REGISTRY.get(name)
    if decl is not None and decl.argument is None:
        return decl, name
    base, sep, arg = name.partition(":")
    decl = BENCHMARK_REGISTRY.get(base)
    if sep and decl is not None and decl.argument is not None:
        return decl, arg
    return None


def _math_reader(name: str, *, data_dir=None, limit=None, prompt_suffix=MATH_PROMPT_SUFFIX, **_: Any) -> list[Problem]:
    if data_dir is None:
        raise ValueError(f"{name} is read from <data-dir>/{name}/test.jsonl: pass data_dir")
    return read_math_benchmark(name, data_dir, limit=limit, prompt_suffix=prompt_suffix)


def _figfont_reader(_: str, *, size=None, limit=None, seed=DEFAULT_EVAL_SEED, data_dir=None, prompt_suffix=None,
                    **config: Any) -> list[Problem]:
    return figfont_problems(size=size or limit or 256, seed=seed, **config)


def _rg_reader(task: str, *, size=None, limit=None, seed=DEFAULT_EVAL_SEED, data_dir=None, prompt_suffix=None,
               **config: Any) -> list[Problem]:
    return rg_problems(task, size=size or limit or 100, seed=seed, **config)


def _medical_reader(path: str, *, limit=None, **_: Any) -> dict[str, list[Problem]]:
    from .medical import read_medical

    if not path:
        raise ValueError("medical: name the m1 evaluation file, e.g. --benchmark medical:data/m1_eval.json")
    return read_medical(path, scorer="mcq", limit=limit)


for _name, (_q, _a, _) in MATH_BENCHMARKS.items():
    register_benchmark(_name, _math_reader, f"math, <data-dir>/{_name}/test.jsonl ({_q}/{_a}); scorer: math",
                       scorer="math", regime="math", data_dir=True)
register_benchmark("figfont", _figfont_reader, "reasoning-gym figlet_font puzzles (words of 2-5 letters), "
                   "generated; scorers: exact (primary) and jaro_winkler", scorer="exact", regime="figfont")
register_benchmark("rg", _rg_reader, "any reasoning-gym task, generated; scorer: the task's own (rg:<task>)",
                   scorer="rg:<task>", argument="task")
register_benchmark("medical", _medical_reader, "the m1 medical suite (JSON list, or dict of source -> list, of "
                   "items with prompt, options, answer_idx); a row per source and their mean; scorer: mcq",
                   scorer="mcq", regime="medical", argument="file")

# the built-in benchmarks and their help (a snapshot; list_benchmarks() includes those registered later)
BENCHMARKS: dict[str, str] = {
    **list_benchmarks(), "<file>.jsonl": "records with prompt or messages, and answer; needs an explicit scorer",
}


def load_benchmark(name: str, *, data_dir: str | Path | None = None, scorer: str | None = None,
                   limit: int | None = None, size: int | None = None, seed: int = DEFAULT_EVAL_SEED,
                   prompt_suffix: str | None = MATH_PROMPT_SUFFIX, key_map: Any = None,
                   **config: Any) -> list[Problem]:
    """Problems of a benchmark by name: a registered one (:func:`list_benchmarks`) through its
    declared reader, else a record file.

    * a math benchmark: :func:`read_math_benchmark` from ``data_dir``;
    * ``figfont``: :func:`figfont_problems` (``size`` default 256);
    * ``rg:<task>``: :func:`rg_problems` (``size`` default 100; ``config`` goes to the task);
    * ``medical:<file>``: :func:`~deft.eval.medical.read_medical`, every source's problems in turn;
    * a path to a ``.jsonl`` file: :func:`read_records` with ``scorer`` (required).

    ``limit`` keeps the first problems. Raises ``ValueError`` for an unknown name.
    """
    found = find_benchmark(name)
    if found is not None:
        decl, key = found
        problems = decl.reader(key, data_dir=data_dir, limit=limit, size=size, seed=seed, prompt_suffix=prompt_suffix,
                               **config)
        if isinstance(problems, dict):  # {source: problems}
            problems = [p for group in problems.values() for p in group]
    elif name.endswith(".jsonl") or Path(name).exists():
        if scorer is None:
            raise ValueError(f"record file {name}: name its scorer ({', '.join(scorer_names())})")
        problems = read_records(name, scorer, limit=limit, key_map=key_map)
    else:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(benchmark_names())} or a record file")
    return problems[:limit] if limit is not None else problems
