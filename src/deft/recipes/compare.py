"""Compare objectives: one training run per objective on the same model, data, seed and
hyper-parameters, each evaluated (and the base model), summarised as a paper-style table.

Layout of an experiment directory::

    DIR/runs/<objective>/        deft train output (metrics.jsonl, final/, ...)
    DIR/eval/<base|objective>/   deft eval output (results.json, generations.jsonl)
    DIR/results.md, results.csv  methods as rows, benchmark metrics as columns, an average column
    DIR/training_curves.png      token statistics of every run over training (Figure 5 view)
    DIR/gate_curves.png          gate s(p) and signal W(p) of the compared objectives

Finished runs (``final/`` present) and finished evaluations (``results.json`` present) are not
redone, so an interrupted comparison continues where it stopped; an interrupted training run
resumes from its newest checkpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = ["run_name", "compare", "run_grid", "validate_grid"]


def run_name(spec: str) -> str:
    """A directory-safe name for an objective spec (``power:alpha=0.5`` -> ``power-alpha0.5``)."""
    text = spec.replace(">=", "-ge").replace("<=", "-le").replace("=", "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _train_in_subprocess(options: dict, run_dir: Path) -> None:
    """Run ``deft train`` in a fresh process: each run starts with clean memory and a crash in
    one run cannot take the comparison down with it. Its output goes to ``run_dir/train.log``."""
    import subprocess
    import sys

    run_dir.mkdir(parents=True, exist_ok=True)
    args = [f"{key}={value}" for key, value in options.items() if value is not None]
    log_path = run_dir / "train.log"
    with open(log_path, "w") as log_file:
        done = subprocess.run([sys.executable, "-m", "deft.cli.main", "train", *args],
                              stdout=log_file, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        lines = log_path.read_text().strip().splitlines()
        last = lines[-1] if lines else "no output"
        raise ValueError(f"training {options.get('objective')} failed ({last}); see {log_path}")


def compare(
    *,
    model: str,
    train_data: str,
    objectives: Sequence[str],
    benchmarks: Sequence[str],
    out_dir: str,
    train_options: Optional[dict] = None,
    eval_options: Optional[dict] = None,
    evaluate_base: bool = True,
    log: Callable = print,
) -> str:
    """Train one run per objective, evaluate every run (and the base model) and write the
    tables and plots; returns the markdown table. ``train_options`` are ``deft train`` options
    (``max_steps``, ``lr``, ...), ``eval_options`` are :func:`deft.eval.runner.evaluate`
    keyword arguments (``size``, ``k``, ``max_new_tokens``, ``data_dir``, ...)."""
    from ..eval.runner import evaluate
    from ..objectives import parse_objective
    from ..train import load_config
    from ..analysis.curves import all_curves, plot_curves
    from ..analysis.tables import write_tables
    from ..analysis.training_curves import plot_training_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = [parse_objective(s).spec for s in objectives]  # fail early on a bad spec
    names = [run_name(s) for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"objectives must be distinct, got {', '.join(specs)}")
    eval_kw = dict(k=1, progress=False, print_table=False)  # temperature: 0 for k=1, else 1 (the paper)
    eval_kw.update(eval_options or {})
    train_kw = dict(train_options or {})
    (out / "compare.json").write_text(json.dumps({"model": model, "train_data": train_data, "objectives": specs,
                                                  "benchmarks": list(benchmarks), "train": train_kw,
                                                  "eval": eval_kw}, indent=2, default=str))

    def evaluated(name: str, spec_model: str) -> dict:
        if not benchmarks:
            return {}
        target = out / "eval" / name
        done = target / "results.json"
        if done.exists():
            log(f"{name}: evaluation already done ({done})")
            return json.loads(done.read_text())
        log(f"{name}: evaluating on {', '.join(benchmarks)} ...")
        return evaluate(spec_model, list(benchmarks), out_dir=str(target), **eval_kw)

    results: dict[str, dict] = {}
    if evaluate_base and benchmarks:
        results["Base"] = evaluated("base", model)
    runs = {}
    for spec, name in zip(specs, names):
        run_dir = out / "runs" / name
        final = run_dir / "final"
        if final.is_dir() and (run_dir / "summary.json").exists():
            log(f"{spec}: training already done ({final})")
        else:
            options = dict(train_kw, model=model, data=train_data, objective=spec, output_dir=str(run_dir),
                           progress=False, resume=(run_dir / "config.yaml").exists())
            load_config(None, options)  # fail early on a bad option
            log(f"{spec}: training ...")
            _train_in_subprocess(options, run_dir)
        runs[spec] = run_dir
        results[spec] = evaluated(name, str(final))

    md = write_tables(results, out, title=f"{model} on {Path(train_data).name}")
    plot_training_curves(runs, out / "training_curves.png", title=f"{model}: token statistics during training")
    curve_specs = [s for s in specs if not (parse_objective(s).needs - {"batch"})]
    if curve_specs:
        plot_curves(all_curves(curve_specs), out / "gate_curves.png")
    return md


def validate_grid(grid: dict, where: str = "grid") -> tuple[list, dict]:
    """Check a grid mapping (see :func:`run_grid`); return its models and datasets."""
    required = ("models", "datasets", "objectives", "benchmarks")
    missing = [k for k in required if k not in grid]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}; a grid needs {', '.join(required)}")
    unknown = set(grid) - {*required, "out", "train", "eval", "base"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    models = grid["models"] if isinstance(grid["models"], list) else [grid["models"]]
    datasets = grid["datasets"]
    if not isinstance(datasets, dict):
        raise ValueError(f"{where}: 'datasets' must map a name to a record file")
    from ..objectives import parse_objective

    for spec in grid["objectives"]:
        parse_objective(spec)
    return models, datasets


def run_grid(grid: dict, *, where: str = "grid", log: Callable = print) -> str:
    """Run a grid of comparisons (models x datasets, each over the same objectives and
    benchmarks) described by a mapping with keys ``out``, ``models``, ``datasets`` (name -> file),
    ``objectives``, ``benchmarks`` and optional ``train`` / ``eval`` option mappings. Writes one
    experiment directory per (model, dataset) under ``out`` and ``out/results.md`` with all tables."""
    models, datasets = validate_grid(grid, where)
    out = Path(grid.get("out", "runs/grid"))
    tables = []
    for model in models:
        for data_name, data_path in datasets.items():
            target = out / run_name(model) / run_name(data_name)
            log(f"== {model} x {data_name} -> {target}")
            md = compare(model=model, train_data=str(data_path), objectives=list(grid["objectives"]),
                         benchmarks=list(grid["benchmarks"]), out_dir=str(target),
                         train_options=dict(grid.get("train") or {}), eval_options=dict(grid.get("eval") or {}),
                         evaluate_base=bool(grid.get("base", True)), log=log)
            tables.append(md)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(tables))
    return "\n".join(tables)
