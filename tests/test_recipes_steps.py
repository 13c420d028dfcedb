"""Tests of deft.recipes.steps: a recipe's ``deft`` command in a fresh process (or, for the tests
of the recipes, in this one), its output in a log, a failure named with the log's last line."""

import json
import sys

import pytest

from deft.recipes import steps


def test_a_step_writes_its_output_to_its_log(tmp_path, monkeypatch, tiny_model_dir):
    """The in-process start (the recipes' tests use it) writes the log a fresh process writes."""
    monkeypatch.setattr(steps, "start", steps.in_this_process)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Say hi.", "response": "hi"}) + "\n")
    log = tmp_path / "logs" / "stats.log"
    steps.run_deft(["deft", "data", "stats", str(data), "--model", str(tiny_model_dir)], log, "stats")
    assert log.read_text().startswith(f"{data}: 1 records read, 1 valid, 0 invalid")


@pytest.mark.parametrize("start", [steps.in_fresh_process, steps.in_this_process])
def test_a_failed_step_names_the_last_line_of_its_log(start, tmp_path, monkeypatch):
    """A real ``deft`` in a fresh process (the default start), and the same in this process."""
    assert steps.start is steps.in_fresh_process
    monkeypatch.setattr(steps, "start", start)
    log = tmp_path / "train.log"
    with pytest.raises(ValueError) as err:
        steps.run_deft(["deft", "train", "--data", str(tmp_path / "missing.jsonl")], log, "training nll")
    last = log.read_text().strip().splitlines()[-1]
    assert str(err.value) == f"training nll failed ({last}); see {log}"
    assert last.startswith("deft train: error: ") and "missing.jsonl: no such file" in last  # not a traceback


def test_a_command_that_is_not_deft_runs_as_given(tmp_path):
    """A multi-GPU step starts with ``accelerate launch``: it runs as written, whatever ``start`` is."""
    log = tmp_path / "launch.log"
    steps.run_deft([sys.executable, "-c", "print('launched')"], log, "launching")
    assert log.read_text() == "launched\n"
    with pytest.raises(ValueError, match=r"^launching failed \(gone\); see "):
        steps.run_deft([sys.executable, "-c", "print('gone'); raise SystemExit(3)"], log, "launching")
