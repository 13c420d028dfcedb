"""Tests of deft.recipes.grid: grids of comparisons: models x datasets from one YAML file, each cell a
:func:`~deft.recipes.compare.compare`."""

import json

import pytest

from deft.cli.main import main

pytestmark = pytest.mark.usefixtures("deft_steps_in_process")  # steps in this process (conftest)


def test_grid_file(tiny_model_dir, figfont_records, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({
        "out": str(tmp_path / "grid"), "models": [str(tiny_model_dir)], "datasets": {"ff": str(figfont_records)},
        "objectives": ["nll"], "benchmarks": ["figfont"], "base": False, "forgetting": False,
        "train": {"max_steps": 1, "batch_size": 2, "max_length": 256}, "eval": {"size": 2, "max_new_tokens": 4},
    }))
    assert main(["compare", "--grid", str(grid)]) == 0
    assert "| nll |" in (tmp_path / "grid" / "results.md").read_text()
