"""The problems of an evaluation, per benchmark, as the chosen protocol asks them.

:func:`load_problems` reads every benchmark before any model is loaded (so a bad name fails fast)
and returns ``{result name: problems}``; the medical suite gives one entry per source,
``medical/<source>``, whose mean becomes the ``medical`` row of the results.

Under ``--protocol paper`` the figfont, math and medical problems carry the reference's literal
prompt (:mod:`.prompts`) and paper scorers; figfont is reasoning-gym ``figlet_font`` items
40,000.. of seed 42 (the reference's test split); record files and ``rg:<task>`` are unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from .benchmarks import MATH_PROMPT_SUFFIX, Problem, benchmark_names, find_benchmark, load_benchmark, rg_problems
from .config import PAPER_PRESETS, EvalConfig, make_config, regime_of
from .prompts import model_family, render_paper_prompt
from .scorers import check_scorer, scorer_names

__all__ = ["PAPER_FIGFONT_SEED", "PAPER_FIGFONT_TEST_START", "load_problems"]

PAPER_FIGFONT_SEED = 42
PAPER_FIGFONT_TEST_START = 40_000
PAPER_FIGFONT_TEST_SIZE = 5_000


def _scorer_names(names: Sequence[str]) -> tuple[str, ...]:
    """The distinct scorer names of ``EvalConfig.scorer`` (a list once loaded), each checked."""
    for s in names:
        check_scorer(s)
    return tuple(dict.fromkeys(names))


def _is_record_file(name: str) -> bool:
    return find_benchmark(name) is None


def _check_name(name: str, cfg: EvalConfig, scorers: tuple[str, ...]) -> None:
    found = find_benchmark(name)
    if found is not None and found[0].data_dir:
        if cfg.data_dir is None:
            raise ValueError(f"{name} is read from DATA_DIR/{name}/test.jsonl: pass data_dir (--data-dir)")
        if not Path(cfg.data_dir).is_dir():
            raise FileNotFoundError(f"data directory {cfg.data_dir} not found")
    if found is not None and found[0].argument and not found[1]:
        decl = found[0]
        example = "medical:data/m1_eval.json" if decl.name == "medical" else f"{decl.name}:<{decl.argument}>"
        raise ValueError(f"{decl.name}: name the {decl.argument} after the colon, e.g. --benchmark {example}")
    if found is None:
        if not Path(name).exists():
            if name.endswith((".jsonl", ".json")) or "/" in name:
                raise FileNotFoundError(f"record file {name} not found")
            raise ValueError(f"unknown benchmark {name!r}; use {', '.join(benchmark_names())} or a record file")
        if not scorers:
            raise ValueError(f"record file {name}: name its scorer with --scorer ({', '.join(scorer_names())}; "
                             "several comma-separated)")


def _with_system(problems: list[Problem], name: str, cfg: EvalConfig, scorers: tuple[str, ...]) -> list[Problem]:
    is_file = _is_record_file(name)
    if cfg.system != "auto":
        default = None if cfg.system in ("none", "") else cfg.system
    elif name == "figfont":
        from ..data.sources import FIGFONT_SYSTEM_PROMPT  # what `deft data figfont` trains with

        default = FIGFONT_SYSTEM_PROMPT
    else:
        default = None
    out = []
    for p in problems:  # a record's own system prompt is already in its messages
        if is_file and len(scorers) > 1:
            p = dataclasses.replace(p, scorers=scorers)
        chat = p.chat()
        sys_prompt = default
        if sys_prompt and not any(m["role"] == "system" for m in chat):
            p = dataclasses.replace(p, messages=({"role": "system", "content": sys_prompt}, *chat))
        out.append(p)
    return out


def _paper(problems: list[Problem], name: str, regime: str, family: str) -> list[Problem]:
    """The reference's literal prompt and scorers (:data:`~deft.eval.config.PAPER_PRESETS`) for a figfont,
    math or medical benchmark."""
    out = []
    for p in problems:
        question = p.prompt.removesuffix("\n" + MATH_PROMPT_SUFFIX)
        raw = render_paper_prompt(regime, question, family)
        p = dataclasses.replace(p, scorers=PAPER_PRESETS[regime]["scorers"])
        if regime == "math":
            p = dataclasses.replace(p, context={"data_name": name})
        out.append(dataclasses.replace(p, raw_prompt=raw, messages=None))
    return out


def _read(name: str, cfg: EvalConfig, scorers: tuple[str, ...]) -> dict[str, list[Problem]]:
    """``{result name: problems}`` of one benchmark name (medical: one entry per source)."""
    paper = cfg.protocol == "paper"
    if name == "figfont" and paper:
        size = cfg.n or PAPER_FIGFONT_TEST_SIZE
        probs = rg_problems("figlet_font", size=size, seed=PAPER_FIGFONT_SEED, benchmark="figfont",
                            scorers=("exact_paper",), start=PAPER_FIGFONT_TEST_START,
                            min_word_len=2, max_word_len=5, space_letters=True)
        return {"figfont": probs[:cfg.limit] if cfg.limit else probs}
    found = find_benchmark(name)
    if found is not None:
        decl, key = found
        probs = decl.reader(key, data_dir=cfg.data_dir, limit=cfg.limit, size=cfg.n, seed=cfg.problem_seed,
                            prompt_suffix=MATH_PROMPT_SUFFIX)
        if isinstance(probs, dict):  # a row per source: "<benchmark>/<source>"
            return {f"{decl.name}/{source}": group for source, group in probs.items()}
    is_file = found is None
    if is_file:
        probs = load_benchmark(name, scorer=scorers[0], limit=cfg.limit, key_map=cfg.map or None)
    else:
        probs = probs[:cfg.limit] if cfg.limit is not None else probs
    key = Path(name).stem if is_file else name
    return {key: _with_system(probs, name, cfg, scorers)}


def load_problems(cfg: EvalConfig | Sequence[str], **options) -> dict[str, list[Problem]]:
    """``{result name: problems}`` for ``cfg.benchmark`` (see the module docstring; the medical
    suite gives ``medical/<source>`` names); ``cfg`` may also be benchmark names with
    :class:`EvalConfig` fields as keywords.
    Raises a one-line ``ValueError`` / ``FileNotFoundError`` for a bad benchmark."""
    if not isinstance(cfg, EvalConfig):
        cfg = make_config(options.pop("model", None), cfg, options)
    scorers = _scorer_names(cfg.scorer)
    if scorers and not any(_is_record_file(b) for b in cfg.benchmark):
        raise ValueError("--scorer is for record files; the named benchmarks have their own scorers")
    for name in cfg.benchmark:
        _check_name(name, cfg, scorers)
    paper_regimes = {regime_of(b) for b in cfg.benchmark} - {"other"}
    family = model_family(cfg.model, cfg.prompt_family) if cfg.protocol == "paper" and paper_regimes else None
    out: dict[str, list[Problem]] = {}
    for name in cfg.benchmark:
        for key, probs in _read(name, cfg, scorers).items():
            if not probs:
                raise ValueError(f"benchmark {name} has no problems")
            if key in out or key == "average" or key.startswith("_"):
                key = name
            if key in out:
                raise ValueError(f"benchmark {name} is given twice")
            ids = [p.id for p in probs]
            if len(set(ids)) != len(ids):
                dup = next(i for i in ids if ids.count(i) > 1)
                raise ValueError(f"benchmark {name}: problem id {dup!r} appears twice; ids must be unique")
            if family is not None and regime_of(name) != "other":
                probs = _paper(probs, key, regime_of(name), family)
            out[key] = probs
    return out
