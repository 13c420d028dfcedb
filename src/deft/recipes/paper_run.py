"""Running one paper cell: its options as a config (YAML or flags), its plan executed step by step
(resumable), and the results table with the paper's number beside each measured one.

Layout of a cell's folder (``out``)::

    plan.json                   the plan (every setting and command), rewritten at each run
    data/train.jsonl            the training records (deft data REGIME --protocol paper)
    runs/<objective>/           deft train output (train.log, final/, ...)
    eval/<base|objective>/      deft eval output (results.json, generations.jsonl, ...)
    eval/<base|objective>.log   its log
    results_paper.md            measured numbers with the paper's and the difference
    paper_comparison.csv        one line per cell with a published number: measured, paper, delta, source

A step whose output exists (records file, ``final/`` with ``summary.json``, ``results.json``) is
not redone; an interrupted training run resumes from its newest checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable, Optional

from ..config import ConfigError, load_config
from ..io import atomic_write_text
from . import steps
from .paper_protocol import PaperCellConfig, PaperPlan, option_pairs, plan_paper_cell, reference_objective

__all__ = ["load_paper_cell", "plan_from_config", "measured_table", "run_paper_cell", "paper_cell_main"]


def load_paper_cell(path: Optional[str] = None, overrides: Optional[dict] = None) -> PaperCellConfig:
    """A :class:`PaperCellConfig` from a YAML file (``train`` / ``eval`` may be mappings) and
    ``overrides`` (option name -> value), every value checked; errors are one line naming the file."""
    import yaml

    values = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of option: value")
        values = {k: option_pairs(v) if k in ("train", "eval") else v for k, v in data.items()}
    values.update(overrides or {})
    where = f"{path} (with the command line)" if path and overrides else str(path or "command line")
    return load_config(PaperCellConfig, None, values, where=where)


def plan_from_config(cfg: PaperCellConfig) -> PaperPlan:
    """The plan of a loaded cell config (:func:`deft.recipes.paper_protocol.plan_paper_cell`)."""
    return plan_paper_cell(cfg)


def _metric(row: dict, names: tuple[str, ...]) -> Optional[float]:
    for name in names:
        if row.get(name) is not None:
            return 100.0 * float(row[name])
    return None


def measured_table(results_by_method: dict, regime: str) -> tuple[list[str], list[list[Optional[float]]], list[str]]:
    """``(titles, rows in percent, methods)`` of ``{method: results.json}`` in the paper's columns
    and metrics: math Average@16 (``mean_acc``, else ``average_at_k``) and their mean; medical
    per-source accuracy and the ``medical`` mean; figfont exact match (``score``, else ``exact``)
    and Jaro-Winkler (``jaro_winkler_similarity``, else ``jaro_winkler``). Missing cells are None;
    a mean is given only over all of its benchmarks."""
    from .paper_tables import BENCHMARKS, COLUMN_TITLES, paper_benchmark

    benches = BENCHMARKS[regime]
    rows = []
    for res in results_by_method.values():
        cells = dict.fromkeys(benches)
        for name, row in res.items():
            if name.startswith("_") or name == "average" or not isinstance(row, dict):
                continue
            if regime == "figfont" and name == "figfont":
                cells["exact"] = _metric(row, ("score", "exact"))
                cells["jaro_winkler"] = _metric(row, ("jaro_winkler_similarity", "jaro_winkler"))
            elif regime != "figfont":
                bench = paper_benchmark(regime, name)
                if bench == "avg" and regime == "math":
                    continue  # the math mean is computed below over the five benchmarks
                if bench is not None:
                    cells[bench] = _metric(row, ("mean_acc", "acc", "average_at_k"))
        parts = [cells[b] for b in benches if b != "avg"]
        if "avg" in cells and cells["avg"] is None and all(v is not None for v in parts):
            cells["avg"] = sum(parts) / len(parts)
        rows.append([cells[b] for b in benches])
    return [COLUMN_TITLES[regime][b] for b in benches], rows, list(results_by_method)


def run_paper_cell(plan: PaperPlan, *, log: Callable = print) -> str:
    """Execute ``plan`` (resumable, see the module docstring) and return the markdown table of the
    measured numbers with the paper's beside them."""
    from ..data.command import run_data
    from .paper_tables import format_paper_markdown, paper_comparison
    from .paper_protocol import plan_to_dict

    root = Path(plan.out)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "plan.json", json.dumps(plan_to_dict(plan), indent=2, default=str) + "\n")
    results = {}
    for step in plan.steps:
        if step.kind == "data":
            if Path(step.settings.out).is_file():
                log(f"records already built ({step.settings.out})")
                continue
            log(f"building the training records: {step.command}")
            log(run_data(step.settings))
        elif step.kind == "train":
            run_dir = Path(step.settings.output_dir)
            if (run_dir / "final").is_dir() and (run_dir / "summary.json").exists():
                log(f"{step.name}: training already done ({run_dir / 'final'})")
                continue
            argv = step.argv + (("resume=true",) if (run_dir / "config.yaml").exists() else ())
            log(f"{step.name}: training ...")
            steps.run_deft(list(argv), run_dir / "train.log", f"training {step.name}")
        else:
            target = Path(step.settings["out"])
            done = target / "results.json"
            if done.exists():
                log(f"{step.name}: evaluation already done ({done})")
            else:
                log(f"{step.name}: evaluating ...")
                # the log sits beside the folder: deft eval refuses an --out holding files it did not write
                steps.run_deft(list(step.argv), target.with_name(target.name + ".log"), f"evaluating {step.name}")
            label = "Base" if step.name == "base" else reference_objective(step.name)
            results[label] = json.loads(done.read_text())
    titles, rows, methods = measured_table(results, plan.regime)
    md = format_paper_markdown(titles, rows, methods, regime=plan.regime, model_key=plan.model_key,
                               title=f"{plan.regime} x {plan.model_key} ({plan.model})")
    atomic_write_text(root / "results_paper.md", md)
    records = paper_comparison(titles, rows, methods, regime=plan.regime, model_key=plan.model_key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["method", "column", "measured", "paper", "delta", "source"])
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(root / "paper_comparison.csv", buf.getvalue())
    return md


def paper_cell_main(config: Optional[str] = None, overrides: Optional[dict] = None, *, log: Callable = print) -> str:
    """``deft compare --protocol paper``: load the cell (YAML ``config`` then ``overrides``, e.g.
    ``{"regime": "figfont", "model_key": "qwen-2.5-1.5b", "objectives": "original,DEFT",
    "dry_run": True}``), check every step's settings, then return the printed plan (``dry_run``) or
    run the cell and return the plan followed by the results table."""
    from .paper_protocol import format_plan

    cfg = load_paper_cell(config, overrides)
    plan = plan_from_config(cfg)
    text = format_plan(plan)
    if cfg.dry_run:
        return text
    log(text)
    return run_paper_cell(plan, log=log)
