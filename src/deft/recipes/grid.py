"""Grids of comparisons: models x datasets from one YAML file, each cell a :func:`~deft.recipes.compare.compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .compare import CompareConfig, compare, plan_runs, run_name

__all__ = ["validate_grid", "run_grid"]


def validate_grid(grid: dict, where: str = "grid") -> tuple[list, dict]:
    """Check a grid mapping (see :func:`run_grid`); return its models and datasets."""
    required = ("models", "datasets", "objectives", "benchmarks")
    missing = [k for k in required if k not in grid]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}; a grid needs {', '.join(required)}")
    unknown = set(grid) - {*required, "out", "train", "eval", "base", "seeds", "heldout", "forgetting"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    models = grid["models"] if isinstance(grid["models"], list) else [grid["models"]]
    datasets = grid["datasets"]
    if not isinstance(datasets, dict):
        raise ValueError(f"{where}: 'datasets' must map a name to a record file")
    from ..objectives import parse_objective

    for spec in grid["objectives"]:
        try:
            parse_objective(spec)
        except (KeyError, ValueError) as err:
            raise ValueError(f"{where}: objectives: {str(err).strip(chr(39))}") from None
    return models, datasets


def _grid_configs(grid: dict, where: str) -> list[tuple[str, CompareConfig]]:
    from ..config import load_config

    models, datasets = validate_grid(grid, where)
    out = Path(grid.get("out", "runs/grid"))
    cells = []
    for model in models:
        for data_name, data_path in datasets.items():
            overrides = {"model": model, "data": str(data_path), "objectives": grid["objectives"],
                         "benchmark": grid["benchmarks"],
                         "out": str(out / run_name(model) / run_name(data_name)),
                         "base": grid.get("base", True), **dict(grid.get("eval") or {})}
            for key in ("seeds", "heldout", "forgetting"):
                if key in grid:
                    overrides[key] = grid[key]
            cells.append((f"{model} x {data_name}", load_config(CompareConfig, None, overrides, where=where)))
    return cells


def run_grid(path: str, *, log: Callable = print) -> str:
    """Run a grid of comparisons from a YAML file (models x datasets, each over the same objectives
    and benchmarks) with keys ``out``, ``models``, ``datasets`` (name -> file), ``objectives``,
    ``benchmarks`` and optional ``train`` / ``eval`` option mappings, ``seeds``, ``heldout``,
    ``forgetting``, ``base``. Every cell's runs are validated before the first one starts. Writes one
    experiment folder per (model, dataset) under ``out`` and ``out/results.md`` with all tables."""
    from ..config import read_yaml
    from ..io import atomic_write_text

    grid = read_yaml(path)
    cells = _grid_configs(grid, str(path))
    train = dict(grid.get("train") or {})
    for _, cfg in cells:
        plan_runs(cfg, train)
    tables = []
    for name, cfg in cells:
        log(f"== {name} -> {cfg.out}")
        tables.append(compare(cfg, train, log=log))
    out = Path(grid.get("out", "runs/grid"))
    atomic_write_text(out / "results.md", "\n".join(tables))
    return "\n".join(tables)
