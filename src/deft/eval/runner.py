"""The evaluation end to end: load a model once, generate ``k`` samples for every problem of one or
more benchmarks, score every sample, summarise, write and print.

:func:`evaluate` returns (and writes to ``<out>/results.json``) a mapping::

    {"<benchmark>": {"n", "k", "average_at_k", "stderr", "pass_at_k", "maj_at_k", "scorer",
                     "<scorer>", "<scorer>_stderr", ..., "truncated"},
     "medical/<source>": {..., "group": "medical"}, "medical": {...mean over sources...},
     "average": {...},          # average_row over the top-level benchmarks
     "_config": {...}}          # resolved settings, settings_hash, per-benchmark decoding and timing

``pass_at_k`` and ``maj_at_k`` appear when ``k > 1``; figfont adds ``exact`` and ``jaro_winkler``.
Under ``--protocol paper`` math rows add the reference's ``acc`` (accuracy of the first sample of
every problem), ``all_acc`` (per sample index) and ``mean_acc`` (their mean, = Average@k: the number
the paper's tables report as Average@16); figfont rows add ``score``, ``normalized_score`` and
``jaro_winkler_similarity``; medical rows are per-source accuracies and their mean. All values are
fractions in [0, 1] (the reference prints percentages). ``truncated`` is the fraction of samples cut
by ``max_new_tokens``.

Generation runs a chunk of problems at a time; each chunk's samples are appended to
``generations.jsonl`` at once (:mod:`.outdir`), and a re-run with the same settings (or ``--resume``)
keeps them, says how many it reuses, and generates only the missing chunks. A chunk's sampling seed
depends only on ``seed``, the benchmark and the chunk's index, so a resumed evaluation gives the
samples of an uninterrupted one.

Scoring runs in the calling thread (math-verify's timeout relies on ``SIGALRM``). Generated text is
only ever compared as text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import config_to_dict, settings_hash
from .benchmarks import BENCHMARK_REGISTRY, Problem, find_benchmark
from .config import EvalConfig, make_config, preset, regime_of
from .generate import Generation
from .metrics import average_row, summarize_scorers
from .outdir import RunFolder, sample_key
from .problems import load_problems
from .heldout import check_heldout_inputs
from .report import format_heldout, format_table
from .scorers import extracted_answer, get_scorer

__all__ = ["default_max_new_tokens", "evaluate", "format_table", "load_generator", "load_problems"]

def default_max_new_tokens(problems: Sequence[Problem]) -> int:
    """The default generation budget of a benchmark: its primary scorer's declared ``max_new_tokens``
    (:func:`~deft.eval.scorers.register_scorer`; 2048 for math and multiple choice, 32 for
    figfont-style exact answers, 1024 for ``rg:<task>``), 1024 when it declares none."""
    if not problems:
        return 1024
    decl, _ = get_scorer(problems[0].scorer)
    return decl.max_new_tokens or 1024


# ---------------------------------------------------------------- settings


def _inputs(cfg: EvalConfig) -> dict[str, str | None]:
    """Input files whose bytes the settings hash covers. A model folder is covered by its files'
    names, sizes and modification times (reading gigabytes of weights for a hash is not worth it)."""
    inputs: dict[str, str | None] = {}
    for name in cfg.benchmark:
        found = find_benchmark(name)
        if found is not None and found[0].data_dir:
            inputs[name] = str(Path(str(cfg.data_dir)) / name / "test.jsonl")
        elif found is not None and found[0].argument == "file":
            inputs[name] = found[1]
        elif found is None and Path(name).exists():
            inputs[name] = name
    if cfg.heldout:
        inputs["heldout"] = cfg.heldout
    for key, spec in (("model", cfg.model), ("base_model", cfg.base_model)):
        if spec and Path(spec).exists():
            inputs[key] = _model_files(Path(spec))
    return inputs


def _model_files(model: Path) -> str:
    files = sorted(p for p in ([model] if model.is_file() else model.rglob("*")) if p.is_file())
    listing = "; ".join(f"{p.relative_to(model) if p != model else p.name}:{p.stat().st_size}:"
                        f"{p.stat().st_mtime_ns}" for p in files)
    return "model files " + hashlib.sha256(listing.encode()).hexdigest()


def _settings(cfg: EvalConfig, decoding: dict[str, dict], batch_size: int, backend: str) -> dict:
    settings = {k: v for k, v in config_to_dict(cfg).items() if k not in ("out", "overwrite", "resume", "progress")}
    settings.update({"batch_size": batch_size, "backend": backend, "decoding": decoding})
    return settings


# ---------------------------------------------------------------- generation


def _as_generation(x: Any) -> Generation:
    if isinstance(x, Generation):
        return x
    if isinstance(x, str):
        return Generation(x, 0, True)
    raise TypeError(f"a generator must return Generation objects or strings, got {type(x).__name__}")


def _chunk_seed(seed: int, benchmark: str, chunk: int) -> int:
    return zlib.crc32(f"{seed}:{benchmark}:{chunk}".encode())


@dataclasses.dataclass(frozen=True)
class Sample:
    """One scored sample: the generation, ``{scorer: score}`` and the primary scorer's answer."""

    generation: Generation
    scores: dict
    answer: str | None


def _scored(p: Problem, g: Generation) -> Sample:
    return Sample(g, p.score(g.text), extracted_answer(p.scorer, g.text, **(p.context or {})))


def _generate(gen: Callable, name: str, probs: Sequence[Problem], dec: dict, cfg: EvalConfig, chunk: int,
              done: dict, folder: RunFolder | None) -> tuple[list[list[Sample]], int]:
    """``k`` scored samples per problem, reusing ``done`` samples of an earlier run; returns them
    and how many were reused. Each missing chunk is generated, scored and appended at once."""
    from tqdm.auto import tqdm

    k = dec["k"]
    rows: list[list[Sample | None]] = [[None] * k for _ in probs]
    reused = 0
    for i, p in enumerate(probs):
        for j in range(k):
            rec = done.get(sample_key(name, p.id, j))
            if rec is not None:
                g = Generation(rec["text"], int(rec.get("tokens") or 0), bool(rec.get("finished", True)))
                rows[i][j] = Sample(g, rec["scores"], rec.get("answer"))
                reused += 1
    bar = tqdm(total=len(probs), desc=name, unit="problem", disable=not cfg.progress, file=sys.stderr,
               dynamic_ncols=True)
    for c, start in enumerate(range(0, len(probs), chunk)):
        part = range(start, min(start + chunk, len(probs)))
        if all(rows[i][j] is not None for i in part for j in range(k)):
            bar.update(len(part))
            continue
        raw = gen([probs[i].generation_input() for i in part], k=k, temperature=dec["temperature"],
                  top_p=dec["top_p"], max_new_tokens=dec["max_new_tokens"], batch_size=dec["batch_size"],
                  seed=_chunk_seed(cfg.seed, name, c), template=cfg.template, progress=False, desc=name)
        if len(raw) != len(part) or any(len(r) != k for r in raw):
            raise ValueError(f"{name}: the generator returned the wrong number of samples")
        lines = []
        for i, row in zip(part, raw):
            p = probs[i]
            rows[i] = [_scored(p, _as_generation(x)) for x in row]
            lines += [{"benchmark": name, "id": p.id, "sample": j, "prompt": p.prompt, "reference": p.reference,
                       "text": s.generation.text, "answer": s.answer, "scores": s.scores,
                       "tokens": s.generation.num_tokens, "finished": s.generation.finished}
                      for j, s in enumerate(rows[i])]
        if folder is not None:
            folder.append(lines)
        bar.update(len(part))
    bar.close()
    return rows, reused  # type: ignore[return-value]


# ---------------------------------------------------------------- summaries


def _summary(name: str, probs: Sequence[Problem], samples: Sequence[Sequence[Sample]], cfg: EvalConfig) -> dict:
    names = probs[0].scorers
    if any(tuple(p.scorers) != tuple(names) for p in probs):
        raise ValueError(f"{name}: problems use different scorers")
    grids = {s: [[x.scores[s] for x in row] for row in samples] for s in names}
    answers = [[x.answer for x in row] for row in samples]
    k = len(samples[0])
    out = summarize_scorers(grids, answers)
    out["truncated"] = sum(not x.generation.finished for row in samples for x in row) / (len(probs) * k)
    if cfg.protocol == "paper":  # the reference's names, as each scorer declares them
        for scorer, grid in grids.items():
            decl, _ = get_scorer(scorer)
            if decl.reference_summary is not None:
                out.update(decl.reference_summary(grid))
    if _group_of(name):  # a row per source (medical/<source>)
        out["group"] = _group_of(name)
    return out


def _group_of(name: str) -> str | None:
    """The benchmark whose per-source row ``name`` is (``medical/MedQA`` -> ``medical``), else ``None``."""
    base, sep, _ = name.partition("/")
    return base if sep and base in BENCHMARK_REGISTRY else None


def _finish(results: dict, groups: dict[str, list[str]]) -> dict:
    """Group mean rows (``medical``) and the average over top-level rows."""
    for group, members in groups.items():
        done = {m: results[m] for m in members if m in results}
        if done:
            results[group] = {**average_row(done), "sources": list(done)}
    top = {k: v for k, v in results.items() if not k.startswith("_") and "group" not in v}
    return {**results, "average": average_row(top)} if top else dict(results)


# ---------------------------------------------------------------- evaluate


def load_generator(spec: str, *, backend: str = "hf", dtype: str = "auto", seed: int = 0,
                   trust_remote_code: bool = False):
    """A loaded generation backend: ``hf`` (:class:`deft.eval.generate.HFGenerator`, transformers,
    default) or ``vllm`` (:class:`deft.eval.generate_vllm.VLLMGenerator`, when installed; otherwise
    ``ValueError`` saying how to get it)."""
    from .generate import HFGenerator

    if backend == "hf":
        return HFGenerator.load(spec, dtype=dtype, trust_remote_code=trust_remote_code)
    if backend == "vllm":
        from .generate_vllm import VLLMGenerator

        return VLLMGenerator.load(spec, dtype=dtype, seed=seed, trust_remote_code=trust_remote_code)
    raise ValueError(f"unknown backend {backend!r}; use hf or vllm")


def _load_generator(cfg: EvalConfig, backend, model, tokenizer):
    """``(generator, backend name, load seconds)``."""
    from .generate import HFGenerator

    if callable(backend):
        return backend, getattr(backend, "name", type(backend).__name__), 0.0
    if model is not None:
        if tokenizer is None:
            raise ValueError("pass the tokenizer together with a loaded model")
        return HFGenerator(model, tokenizer), "hf", 0.0
    start = time.perf_counter()
    gen = load_generator(cfg.model, backend=cfg.backend, dtype=cfg.dtype, seed=cfg.seed,
                         trust_remote_code=cfg.trust_remote_code)
    return gen, cfg.backend, time.perf_counter() - start


def _check_early(cfg: EvalConfig, backend) -> None:
    """Checks that need no data and no model."""
    from ..data.templates import template_names

    if cfg.template not in template_names():
        raise ValueError(f"unknown template {cfg.template!r}; use one of {', '.join(template_names())}")
    if cfg.backend == "vllm" and not callable(backend):
        from .generate_vllm import import_vllm

        import_vllm()  # fail before reading data or loading anything


def evaluate(cfg: EvalConfig | str | None = None, benchmarks: Sequence[str] | str | None = None, *,
             model=None, tokenizer=None, backend: Callable | str | None = None, print_table: bool = True,
             file=None, **options: Any) -> dict:
    """Evaluate a model; see the module docstring for what is returned and written.

    ``cfg`` is an :class:`~deft.eval.config.EvalConfig` (``deft eval`` builds one), or the model
    spec followed by the benchmarks and options as keywords (the field names of ``EvalConfig``;
    ``out_dir`` and ``size`` are accepted for ``out`` and ``n``). Pass a loaded ``model`` and
    ``tokenizer`` to skip loading, or a callable ``backend`` ``(prompts, **options) ->
    list[list[Generation | str]]``. ``print_table`` prints the table to ``file`` (stdout).
    """
    import torch

    if isinstance(backend, str):
        options["backend"] = backend
        backend = None
    cfg = make_config(cfg, benchmarks, options)
    _check_early(cfg, backend)
    problems = load_problems(cfg) if cfg.benchmark else {}
    check_heldout_inputs(cfg)
    groups: dict[str, list[str]] = {}
    for name in problems:
        if _group_of(name):
            groups.setdefault(_group_of(name), []).append(name)
    batch_size = cfg.batch_size or (64 if torch.cuda.is_available() else 8)
    decoding = {}
    for name, probs in problems.items():
        dec = preset(cfg, regime_of(name))
        dec["max_new_tokens"] = dec["max_new_tokens"] or default_max_new_tokens(probs)
        decoding[name] = {**dec, "batch_size": batch_size}
    backend_name = getattr(backend, "name", type(backend).__name__) if callable(backend) else (
        "hf" if model is not None else cfg.backend)
    settings = _settings(cfg, decoding, batch_size, backend_name)
    digest = settings_hash(settings, _inputs(cfg))
    folder = RunFolder(cfg.out, settings, digest, overwrite=cfg.overwrite, resume=cfg.resume) if cfg.out else None
    if folder is not None:
        folder.check()  # before the model loads
        state = folder.state()
        if cfg.resume and state == "finished":  # as 'deft train --resume' on a finished run: say so, change nothing
            print(f"resume: the evaluation in {folder.path} is finished; nothing to do (results.json unchanged)",
                  file=sys.stderr)
            results = folder.saved_results()
            if print_table:
                _print_results(results, cfg, bool(problems), folder, file)
            return results
        if cfg.resume and state == "new":
            print(f"resume: nothing to resume in {folder.path}: starting from scratch", file=sys.stderr)
    for name, dec in decoding.items():
        if dec["k"] > 1 and dec["temperature"] == 0.0:
            print(f"note: {name}: k={dec['k']} with temperature 0 repeats the one greedy sample", file=sys.stderr)
    gen, backend_name, load_seconds = (_load_generator(cfg, backend, model, tokenizer) if problems
                                       else (None, backend_name, 0.0))
    config = {**settings, "settings_hash": digest, "load_seconds": round(load_seconds, 3), "benchmarks": {}}
    with folder if folder is not None else _NoFolder() as run:
        results = _run(cfg, gen, problems, groups, decoding, run, config)
        if cfg.heldout or cfg.forgetting:
            results["heldout"] = _heldout(cfg, gen, model, tokenizer)
        if run is not None:
            run.write_results(results, final=True)
    if print_table:
        _print_results(results, cfg, bool(problems), folder, file)
    return results


def _print_results(results: dict, cfg: EvalConfig, benchmarks: bool, folder: RunFolder | None, file) -> None:
    out = file or sys.stdout
    title = f"model {cfg.model}; protocol {cfg.protocol}"
    if benchmarks:
        print(format_table(results, title=title), file=out)
    if "heldout" in results:
        print(format_heldout(results["heldout"], title=None if benchmarks else title), file=out)
    if folder is not None:
        print(f"results: {folder.path / 'results.json'}; samples: {folder.generations}", file=out)


class _NoFolder:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def _run(cfg, gen, problems, groups, decoding, folder: RunFolder | None, config: dict) -> dict:
    done = folder.finished_samples() if folder is not None else {}
    config["reused_samples"] = 0
    if done:
        wanted = {sample_key(name, p.id, j) for name, probs in problems.items() for p in probs
                  for j in range(decoding[name]["k"])}
        reusable = len(wanted & done.keys())
        print(f"resume: {folder.path}: reusing {reusable} of {len(wanted)} samples finished by an earlier run; "
              f"generating the other {len(wanted) - reusable}", file=sys.stderr)
    results: dict[str, Any] = {}
    for name, probs in problems.items():
        dec = decoding[name]
        draws = dec["k"] if dec["temperature"] > 0 else 1
        chunk = 256 if config["backend"] == "vllm" else max(1, dec["batch_size"] // draws)
        start = time.perf_counter()
        samples, reused = _generate(gen, name, probs, dec, cfg, chunk, done, folder)
        gen_seconds = time.perf_counter() - start
        config["reused_samples"] += reused
        start = time.perf_counter()
        results[name] = _summary(name, probs, samples, cfg)
        config["benchmarks"][name] = {**dec, "generate_seconds": round(gen_seconds, 3),
                                      "score_seconds": round(time.perf_counter() - start, 3)}
        if folder is not None:  # progress so far; results.json appears only when all are done
            folder.write_results({**_finish(dict(results), groups), "_config": config}, final=False)
    return {**_finish(results, groups), "_config": config}


def _heldout(cfg: EvalConfig, gen, model, tokenizer) -> dict:
    """Held-out learning / forgetting metrics (:func:`deft.eval.heldout.eval_heldout`) of the
    evaluated model: the generator's own transformers model when it has one, else loaded here."""
    from .generate import HFGenerator
    from .heldout import eval_heldout

    if model is None:
        hf = gen if isinstance(gen, HFGenerator) else HFGenerator.load(
            cfg.model, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)
        model, tokenizer = hf.model, hf.tokenizer
    return eval_heldout(cfg, model, tokenizer)
