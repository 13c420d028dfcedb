"""What ``deft data`` does with a :class:`~deft.data.config.DataConfig`: write a record file from a
source, check a file, or measure token lengths. The CLI only parses and calls :func:`run_data`.

Defaults that belong to the data, not to the command line, live here: generated sources make
1000 records unless ``n`` says otherwise (the paper protocol: its whole split), the seed is 0 (the
paper protocol: 42), and ``system`` / ``prompt_suffix`` ``"default"`` mean the source's own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from .config import SOURCE_NAMES, DataConfig

__all__ = ["run_data", "resolve_source", "DEFAULT_GENERATED"]

DEFAULT_GENERATED = 1000


def resolve_source(cfg: DataConfig) -> tuple[str, str | None]:
    """``(kind, input)``: the kind of source and its input file; a path (or hub id) given as the
    source is read as a record file. Raises ``ValueError`` for an unknown name."""
    name = cfg.source.partition(":")[0]
    if name in SOURCE_NAMES:
        return name, cfg.input
    if Path(cfg.source).expanduser().exists() or cfg.source.count("/") == 1:
        return "jsonl", cfg.source
    raise ValueError(f"unknown source {cfg.source!r}; use figfont, rg:TASK, math, medical, mix, jsonl, check, stats "
                     f"or a file path")


def _special(value: str) -> str | None:
    """``"default"`` -> None (the source's own), ``"none"`` -> ``""`` (nothing), else the text."""
    if value == "default":
        return None
    return "" if value.strip().lower() in ("none", "") else value


def _seed(cfg: DataConfig) -> int:
    from .paper import PAPER_SEED

    if cfg.protocol == "paper":
        return PAPER_SEED
    return 0 if cfg.seed is None else cfg.seed


def _tokenizer(cfg: DataConfig):
    from ..model import load_tokenizer

    return load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)


def _template(cfg: DataConfig) -> str:
    """``paper`` / ``paper-sft`` take their family from ``model_key`` when it names one (a local
    tokenizer's path often does not)."""
    from .paper import paper_family

    family = paper_family(cfg.model_key)
    if cfg.template in ("paper", "paper-sft") and family:
        return f"{cfg.template}:{family}"
    return cfg.template


def _fail(report, source: str, err: TextIO):
    from .validate import DataError

    for line in report.problem_lines():
        print(line, file=err)
    raise DataError(report, source)


def _stats(cfg: DataConfig, path: str | None, err: TextIO) -> str:
    from .records import parse_key_map
    from .stats import DEFAULT_LENGTHS, token_stats

    if not path:
        raise ValueError("stats needs a FILE: deft data stats FILE --model M")
    if not cfg.model:
        raise ValueError("stats needs --model (the tokenizer to count with), e.g. --model smollm2-135m")
    stats = token_stats(path, _tokenizer(cfg), key_map=parse_key_map(cfg.map), split=cfg.split,
                        template=_template(cfg), all_turns=cfg.all_turns, max_problems=cfg.max_errors)
    text = stats.format(path, (cfg.max_length,) if cfg.max_length else DEFAULT_LENGTHS)
    if stats.report.invalid:
        if not cfg.skip_invalid:
            print(text, file=sys.stdout)
            _fail(stats.report, path, err)
        for line in stats.report.problem_lines():
            print(line, file=err)
    return text


def _items(cfg: DataConfig, kind: str, path: str | None, seed: int):
    from .sources import parse_mix_part, parse_task_args, source_records

    n = cfg.n
    if n is None and kind in ("figfont", "rg") and cfg.protocol == "deft":
        n = DEFAULT_GENERATED
    files = ("check", "jsonl", "json", "parquet", "csv", "generic", "records")
    return source_records(
        "jsonl" if kind in files else cfg.source, input=path, n=n, seed=seed, split=cfg.split,
        task_args=parse_task_args(cfg.task_args), key_map=cfg.map,
        system=_special(cfg.system), prompt_suffix=_special(cfg.prompt_suffix),
        parts=[parse_mix_part(p) for p in cfg.part], keep_extra=cfg.keep_extra, protocol=cfg.protocol,
        model_key=cfg.model_key, model=cfg.model,
    )


def run_data(cfg: DataConfig, *, err: TextIO | None = None) -> str:
    """Do what ``cfg`` asks and return the summary line(s) for stdout; problems go to ``err``
    (stderr). Raises ``ValueError`` (one line) for bad input, before expensive work where it can."""
    from .readers import check_output_path, write_jsonl
    from .tokenize import RecordTokenizer
    from .validate import ValidationReport, check_records

    err = sys.stderr if err is None else err
    kind, path = resolve_source(cfg)
    if kind == "stats":
        return _stats(cfg, path, err)
    if kind == "check" and not path:
        raise ValueError("check needs a FILE: deft data check FILE")
    if kind != "check":
        if not cfg.out:
            raise ValueError(f"{cfg.source} needs --out FILE (where to write the records)")
        check_output_path(cfg.out)
    seed = _seed(cfg)
    items = _items(cfg, kind, path, seed)
    view = None
    if cfg.model:
        view = RecordTokenizer(_tokenizer(cfg), template=_template(cfg), max_length=cfg.max_length,
                               truncation=cfg.truncation, all_turns=cfg.all_turns)
    report = ValidationReport(max_problems=cfg.max_errors)
    label = path or cfg.source

    def records():
        for _, rec in check_records(items, report, tokenizer=view):
            yield rec
        if report.invalid and not cfg.skip_invalid:
            _fail(report, label, err)  # raises before the output file is put in place
        if report.valid == 0 and kind != "check":
            raise ValueError(f"no records to write to {cfg.out} ({report.summary()})")

    if kind == "check":
        for _ in records():
            pass
        written = None
    else:
        written = write_jsonl(records(), cfg.out)
    if report.invalid:
        print(f"skipped {report.invalid} invalid record{'s' if report.invalid != 1 else ''} (--skip-invalid)", file=err)
    if written is None:
        return report.summary()
    extra = f", split {cfg.split}, seed {seed}" if kind in ("figfont", "rg", "mix") else ""
    if cfg.protocol == "paper":
        extra += ", paper protocol"
    return f"wrote {written} records to {cfg.out} ({report.summary()}{extra})"
