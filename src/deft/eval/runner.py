"""The evaluation protocol end to end: load a model once, generate ``k`` samples for every problem
of one or more benchmarks, score every sample, summarise, write and print.

:func:`evaluate` returns (and writes to ``<out_dir>/results.json``) a mapping::

    {"<benchmark>": {"n", "k", "average_at_k", "stderr", "pass_at_k", "maj_at_k", "scorer",
                     "<scorer>", "<scorer>_stderr", ..., "truncated"},
     ...,
     "average": {...},          # average_row over the benchmarks
     "_config": {...}}          # model, decoding options, per-benchmark max_new_tokens and timing

``pass_at_k`` and ``maj_at_k`` appear when ``k > 1``; figfont adds ``exact`` and ``jaro_winkler``.
``truncated`` is the fraction of samples cut by ``max_new_tokens`` before they ended on their own.
Scores are fractions in [0, 1]. ``<out_dir>/generations.jsonl`` has one line per sample: benchmark,
id, prompt, reference, sample index, text, extracted answer, scores, tokens, finished.

Scoring runs in the calling thread, one sample after another (math-verify's timeout relies on
``SIGALRM``, which only works in the main thread). Generated text is only ever compared as text.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .benchmarks import DEFAULT_EVAL_SEED, MATH_BENCHMARKS, Problem, load_benchmark
from .generate import DTYPES, Generation, HFGenerator, load_generator
from .metrics import average_row, summarize_scorers
from .scorers import check_scorer, extracted_answer

__all__ = ["BACKENDS", "DEFAULT_MAX_NEW_TOKENS", "default_max_new_tokens", "evaluate", "format_table",
           "load_problems"]

BACKENDS = ("hf", "vllm")

# primary scorer -> max_new_tokens when none is given: long chains of thought for math and
# multiple choice, a word for figfont-style exact answers, room for a worked answer otherwise
DEFAULT_MAX_NEW_TOKENS = {"math": 2048, "mcq": 2048, "exact": 32, "jaro_winkler": 32, "rg": 1024}


def default_max_new_tokens(problems: Sequence[Problem]) -> int:
    """The default generation budget of a benchmark, from its primary scorer
    (:data:`DEFAULT_MAX_NEW_TOKENS`; ``rg:<task>`` counts as ``rg``)."""
    scorer = problems[0].scorer if problems else "rg"
    return DEFAULT_MAX_NEW_TOKENS.get("rg" if scorer.startswith("rg:") else scorer, 1024)


def _default_system(benchmark: str) -> str | None:
    if benchmark == "figfont":
        from ..data.sources import FIGFONT_SYSTEM_PROMPT  # what `deft data figfont` trains with

        return FIGFONT_SYSTEM_PROMPT
    return None


def _is_record_file(name: str) -> bool:
    return name not in MATH_BENCHMARKS and name != "figfont" and not name.startswith("rg:")


def _record_systems(path: str, count: int) -> list[str | None]:
    """The ``system`` field of the first ``count`` records of a record file (read_records keeps
    ``messages`` but not a separate system prompt)."""
    out: list[str | None] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(out) >= count:
                break
            if line.strip():
                rec = json.loads(line)
                system = rec.get("system") if isinstance(rec, dict) else None
                out.append(str(system) if system else None)
    return out


def _scorer_names(scorer: str | Sequence[str] | None) -> tuple[str, ...]:
    if scorer is None:
        return ()
    names = [s.strip() for s in (scorer.split(",") if isinstance(scorer, str) else scorer)]
    names = [s for s in names if s]
    for s in names:
        check_scorer(s)
    return tuple(dict.fromkeys(names))


def load_problems(benchmarks: Sequence[str], *, data_dir: str | os.PathLike | None = None,
                  scorer: str | Sequence[str] | None = None, limit: int | None = None, size: int | None = None,
                  problem_seed: int = DEFAULT_EVAL_SEED, system: str | None = None) -> dict[str, list[Problem]]:
    """``{result name: problems}`` for each benchmark, every problem carrying the conversation it is
    asked in.

    Benchmarks are names (see :data:`deft.eval.BENCHMARKS`) or record files; a record file is
    scored by ``scorer`` (one name or several, comma-separated; the first is primary) and named by
    its file stem. ``size`` is how many problems figfont / ``rg:<task>`` generate (seeded by
    ``problem_seed``); ``limit`` keeps the first problems of each benchmark. ``system`` is the
    system prompt for problems without one (``None``: the benchmark's default — figfont's
    training system prompt, none elsewhere; ``""``: none). Every benchmark is read before any
    model is loaded, so a bad name fails fast.
    """
    if not benchmarks:
        raise ValueError("no benchmark given; pass --benchmark NAME (math500, aime24, amc23, minerva_math, "
                         "olympiadbench, gsm8k, figfont, rg:<task>) or a record file")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1; got {limit}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1; got {size}")
    scorers = _scorer_names(scorer)
    files = [b for b in benchmarks if _is_record_file(b)]
    if scorers and not files:
        raise ValueError("--scorer is for record files; the named benchmarks have their own scorers")
    out: dict[str, list[Problem]] = {}
    for name in benchmarks:
        if name in MATH_BENCHMARKS and data_dir is None:
            raise ValueError(f"{name} is read from DATA_DIR/{name}/test.jsonl: pass data_dir (--data-dir)")
        if name in MATH_BENCHMARKS and not Path(data_dir).is_dir():
            raise FileNotFoundError(f"data directory {data_dir} not found")
        is_file = _is_record_file(name)
        if is_file and not Path(name).is_file():
            if name.endswith((".jsonl", ".json")) or os.sep in name:
                raise FileNotFoundError(f"record file {name} not found")
            raise ValueError(f"unknown benchmark {name!r}; use math500, aime24, amc23, minerva_math, "
                             "olympiadbench, gsm8k (with --data-dir), figfont, rg:<task> or a record file")
        if is_file and not scorers:
            raise ValueError(f"record file {name}: name its scorer with --scorer (math, mcq, exact, "
                             "jaro_winkler or rg:<task>; several comma-separated)")
        problems = load_benchmark(name, data_dir=data_dir, scorer=scorers[0] if is_file else None,
                                  limit=limit, size=size, seed=problem_seed)
        if not problems:
            raise ValueError(f"benchmark {name} has no problems")
        sys_default = _default_system(name) if system is None else (system or None)
        file_systems = _record_systems(name, len(problems)) if is_file else [None] * len(problems)
        fixed = []
        for p, file_system in zip(problems, file_systems):
            if is_file and len(scorers) > 1:
                p = dataclasses.replace(p, scorers=scorers)
            chat = p.chat()
            sys_prompt = file_system or sys_default
            if sys_prompt and not any(m["role"] == "system" for m in chat):
                p = dataclasses.replace(p, messages=({"role": "system", "content": sys_prompt}, *chat))
            fixed.append(p)
        key = Path(name).stem if is_file else name
        if key in out or key == "average" or key.startswith("_"):
            key = name
        if key in out:
            raise ValueError(f"benchmark {name} is given twice")
        out[key] = fixed
    return out


# ---------------------------------------------------------------- output


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def format_table(results: dict, *, title: str | None = None) -> str:
    """A plain-text table of :func:`evaluate` results: benchmark, n, k, Average@k ± standard error,
    Pass@k, Maj@k, and each secondary scorer (figfont: exact, jaro_winkler); values in percent.
    The average row is shown when there are several benchmarks."""
    names = [b for b in results if b != "average" and not b.startswith("_")]
    rows = [(b, results[b]) for b in names]
    if len(names) > 1 and "average" in results:
        rows.append(("average", results["average"]))
    extra: list[str] = []
    for _, r in rows:
        for key in r:
            if key in ("exact", "jaro_winkler") and key not in extra:
                extra.append(key)
    header = ["benchmark", "n", "k", "avg@k ± se", "pass@k", "maj@k", *extra]
    table = [header]
    for name, r in rows:
        avg = f"{_pct(r.get('average_at_k'))} ± {_pct(r.get('stderr'))}"
        k = r.get("k")
        table.append([name, str(r.get("n", "-")), "-" if k is None else str(k), avg,
                      _pct(r.get("pass_at_k")), _pct(r.get("maj_at_k")), *(_pct(r.get(e)) for e in extra)])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    for i, row in enumerate(table[1:], 1):
        if row[0] == "average" and i == len(table) - 1 and len(rows) > 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append(fmt(row))
    if title:
        lines.insert(0, title)
    return "\n".join(lines)


# ---------------------------------------------------------------- evaluate


def _as_generation(x: Any) -> Generation:
    if isinstance(x, Generation):
        return x
    if isinstance(x, str):
        return Generation(x, 0, True)
    raise TypeError(f"a generator must return Generation objects or strings, got {type(x).__name__}")


def _score_benchmark(problems: Sequence[Problem], samples: Sequence[Sequence[Generation]]):
    """Scores per scorer (problems x samples), the primary scorer's extracted answers, and one
    generations.jsonl record per sample."""
    names = problems[0].scorers
    grids: dict[str, list[list[float]]] = {s: [] for s in names}
    answers: list[list[str | None]] = []
    lines: list[dict] = []
    for p, row in zip(problems, samples):
        if tuple(p.scorers) != tuple(names):
            raise ValueError(f"{p.benchmark}: problems use different scorers ({names} and {p.scorers})")
        per = {s: [] for s in names}
        ans_row = []
        for j, g in enumerate(row):
            scores = p.score(g.text)
            answer = extracted_answer(p.scorer, g.text)
            for s in names:
                per[s].append(scores[s])
            ans_row.append(answer)
            lines.append({"benchmark": p.benchmark, "id": p.id, "prompt": p.prompt, "reference": p.reference,
                          "sample": j, "text": g.text, "answer": answer, "scores": scores,
                          "tokens": g.num_tokens, "finished": g.finished})
        for s in names:
            grids[s].append(per[s])
        answers.append(ans_row)
    return grids, answers, lines


def evaluate(model_spec: str | None, benchmarks: Sequence[str], *, data_dir: str | os.PathLike | None = None,
             scorer: str | Sequence[str] | None = None, k: int = 1, temperature: float | None = None,
             top_p: float = 1.0, max_new_tokens: int | None = None, batch_size: int | None = None,
             limit: int | None = None, size: int | None = None, seed: int = 0,
             out_dir: str | os.PathLike | None = None, backend: str | Callable = "hf", template: str = "auto",
             system: str | None = None, dtype: str = "auto", trust_remote_code: bool = False,
             problem_seed: int = DEFAULT_EVAL_SEED, model=None, tokenizer=None, progress: bool = True,
             print_table: bool = True, file=None) -> dict:
    """Evaluate a model on benchmarks with the paper's protocol; see the module docstring for what
    is returned and written.

    ``model_spec`` is anything :func:`deft.model.load_model` takes (the embedded ``smollm2-135m``,
    a ``.gguf`` file, a local HF directory such as a ``deft train`` ``final/``, a hub id); or pass
    a loaded ``model`` and ``tokenizer`` (HF backend). ``backend`` is ``hf``, ``vllm`` or a callable
    ``(prompts, **options) -> list[list[Generation | str]]``.

    Decoding: ``k`` samples per problem; ``temperature`` defaults to 0 (greedy) for ``k == 1`` and
    1.0 for ``k > 1``; ``top_p``; ``max_new_tokens`` defaults per benchmark
    (:func:`default_max_new_tokens`); ``batch_size`` (sequences per HF ``generate`` call) defaults to
    64 on a GPU and 8 on CPU; ``seed`` makes sampling reproducible. Problems: see
    :func:`load_problems` (``data_dir``, ``scorer``, ``limit``, ``size``, ``problem_seed``,
    ``system``). ``template`` renders prompts as in training (``auto``, ``chat``, ``plain``, ``qa``).
    With ``out_dir``, ``generations.jsonl`` grows by one benchmark at a time,
    ``results.partial.json`` holds the benchmarks finished so far, and ``results.json`` is written
    (atomically) only when every benchmark is done. ``print_table`` prints the table to ``file`` (stdout).
    """
    import torch

    if temperature is None:
        temperature = 0.0 if k == 1 else 1.0
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (samples per problem) must be an integer >= 1; got {k!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy decoding); got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1]; got {top_p}")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if isinstance(backend, str) and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use {' or '.join(BACKENDS)}")
    if backend == "vllm":
        from .generate import _import_vllm

        _import_vllm()  # fail before reading data or loading anything
    if model is None and model_spec is None and not callable(backend):
        raise ValueError("no model given")
    from ..data.templates import template_names

    if template not in template_names():
        raise ValueError(f"unknown template {template!r}; use one of {', '.join(template_names())}")
    out = file or sys.stdout
    if k > 1 and temperature == 0.0:
        print(f"note: k={k} with temperature 0 repeats the one greedy sample {k} times", file=sys.stderr)

    problems = load_problems(benchmarks, data_dir=data_dir, scorer=scorer, limit=limit, size=size,
                             problem_seed=problem_seed, system=system)

    load_seconds = 0.0
    if callable(backend):
        gen, backend_name = backend, getattr(backend, "name", type(backend).__name__)
    elif model is not None:
        if backend != "hf":
            raise ValueError("a loaded model runs on the hf backend; pass a model spec for vllm")
        if tokenizer is None:
            raise ValueError("pass the tokenizer together with a loaded model")
        gen, backend_name = HFGenerator(model, tokenizer), "hf"
    else:
        start = time.perf_counter()
        gen = load_generator(str(model_spec), backend=backend, dtype=dtype, seed=seed,
                             trust_remote_code=trust_remote_code)
        backend_name, load_seconds = backend, time.perf_counter() - start
    if batch_size is None:
        batch_size = 64 if torch.cuda.is_available() else 8
    tok = getattr(gen, "tokenizer", None)
    resolved_template = template
    if tok is not None:
        from ..data.templates import resolve_template

        resolved_template = resolve_template(template, tok)

    config: dict[str, Any] = {
        "model": None if model_spec is None else str(model_spec), "backend": backend_name, "k": k,
        "temperature": temperature, "top_p": top_p, "seed": seed, "batch_size": batch_size,
        "template": resolved_template, "dtype": dtype, "limit": limit, "size": size,
        "problem_seed": problem_seed, "data_dir": None if data_dir is None else str(data_dir),
        "scorer": scorer if scorer is None or isinstance(scorer, str) else ",".join(scorer),
        "load_seconds": round(load_seconds, 3), "benchmarks": {},
    }
    try:
        from .. import __version__

        config["deft_version"] = __version__
    except ImportError:  # pragma: no cover
        pass

    out_path = Path(out_dir) if out_dir is not None else None
    gen_file = None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        gen_file = open(out_path / "generations.jsonl", "w", encoding="utf-8")
    results: dict[str, Any] = {}
    try:
        for name, probs in problems.items():
            budget = max_new_tokens or default_max_new_tokens(probs)
            start = time.perf_counter()
            raw = gen([p.chat() for p in probs], k=k, temperature=temperature, top_p=top_p,
                      max_new_tokens=budget, batch_size=batch_size, seed=seed, template=template,
                      progress=progress, desc=name)
            gen_seconds = time.perf_counter() - start
            if len(raw) != len(probs) or any(len(row) != k for row in raw):
                raise ValueError(f"{name}: the generator returned the wrong number of samples")
            samples = [[_as_generation(x) for x in row] for row in raw]
            start = time.perf_counter()
            grids, answers, lines = _score_benchmark(probs, samples)
            score_seconds = time.perf_counter() - start
            summary = summarize_scorers(grids, answers)
            summary["truncated"] = sum(not g.finished for row in samples for g in row) / (len(probs) * k)
            results[name] = summary
            config["benchmarks"][name] = {
                "max_new_tokens": budget, "generate_seconds": round(gen_seconds, 3),
                "score_seconds": round(score_seconds, 3),
                "problems_per_second": round(len(probs) / gen_seconds, 4) if gen_seconds > 0 else None,
            }
            if gen_file is not None:
                for line in lines:
                    gen_file.write(json.dumps(_json_safe(line), ensure_ascii=False) + "\n")
                gen_file.flush()
            if out_path is not None:  # progress so far; results.json appears only when all are done
                partial = {**results, "average": average_row(results), "_config": config}
                _atomic_write(out_path / "results.partial.json", json.dumps(_json_safe(partial), indent=2) + "\n")
    finally:
        if gen_file is not None:
            gen_file.close()
    full = {**results, "average": average_row(results), "_config": config}
    if out_path is not None:
        _atomic_write(out_path / "results.json", json.dumps(_json_safe(full), indent=2) + "\n")
        (out_path / "results.partial.json").unlink(missing_ok=True)
    if print_table:
        title = f"model {config['model'] or backend_name}; k={k}, temperature={temperature:g}, top_p={top_p:g}"
        print(format_table(full, title=title), file=out)
        if out_path is not None:
            print(f"results: {out_path / 'results.json'}; samples: {out_path / 'generations.jsonl'}", file=out)
    return full
