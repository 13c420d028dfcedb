"""mutation/run.py: ``--changed`` skips a group whose stored session is finished and whose modules are
byte-for-byte those it mutated; a mutant's command runs its likely killers alone first; a test that
fails alone on the unmutated code is found (its first-stage kills prove nothing)."""

import shlex
import subprocess
from pathlib import Path

import pytest
from mutation_helpers import load_mutation_module


@pytest.fixture()
def run_module(tmp_path, monkeypatch):
    """mutation/run.py loaded under its own name, its build folder in ``tmp_path``."""
    module = load_mutation_module("run")
    monkeypatch.setattr(module, "BUILD", tmp_path / "build")
    return module


def _group(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("x = 1\n")
    return {"modules": [str(source)]}  # absolute: the repository root / an absolute path is that path


def test_a_group_without_a_session_or_with_changed_modules_is_not_current(run_module, tmp_path):
    group = _group(tmp_path)
    assert not run_module.is_current("g", group)
    work = tmp_path / "build" / "g"
    work.mkdir(parents=True)
    (work / "session.sqlite").write_bytes(b"")
    (work / "modules.sha").write_text("0123456789abcdef\n")  # the stamp of other module bytes
    assert not run_module.is_current("g", group)


def test_a_finished_session_of_unchanged_modules_is_current_until_a_module_changes(run_module, tmp_path):
    pytest.importorskip("cosmic_ray")  # the mutation extra
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import MutationSpec, WorkItem

    group = _group(tmp_path)
    work = tmp_path / "build" / "g"
    work.mkdir(parents=True)
    (work / "modules.sha").write_text(run_module._group_fingerprint(group) + "\n")
    with use_db(str(work / "session.sqlite"), WorkDB.Mode.create):
        pass
    assert run_module.is_current("g", group)
    Path(group["modules"][0]).write_text("x = 2\n")
    assert not run_module.is_current("g", group)
    Path(group["modules"][0]).write_text("x = 1\n")
    assert run_module.is_current("g", group)
    with use_db(str(work / "session.sqlite"), WorkDB.Mode.open) as db:  # an interrupted run
        db.add_work_item(WorkItem("job", [MutationSpec(Path("m.py"), "core/NumberReplacer", 0, (1, 4), (1, 5))]))
    assert not run_module.is_current("g", group)


def test_a_test_that_fails_alone_is_found_so_its_first_stage_kills_are_run_again(run_module, tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_dep.py").write_text(
        "STATE = []\n\n\ndef test_sets():\n    STATE.append(1)\n\n\ndef test_needs():\n    assert STATE\n")
    server = run_module.Server(tmp_path, ["pytest"], [])
    try:
        # together (in the given order) both pass; alone, the second depends on the first
        tests = ["tests/test_dep.py::test_sets", "tests/test_dep.py::test_needs"]
        together = server.command(tmp_path, ["tests/test_dep.py"], [])
        assert subprocess.run(shlex.split(together), capture_output=True).returncode == 0
        assert run_module.failing_alone(tmp_path, server, [], tests) == ["tests/test_dep.py::test_needs"]
    finally:
        server.close()


def test_a_command_with_likely_killers_runs_them_alone_first(run_module, tmp_path):
    server = object.__new__(run_module.Server)
    server.socket = "s.sock"
    stages = shlex.split(server.command(tmp_path, ["tests/a.py"], ["src/m.py"], first=["tests/b.py::t[x - y]"]))
    stages = stages[stages.index("--") + 1:]
    cut = stages.index("--then")
    assert stages[:cut] == [*run_module.PYTEST_ARGS, "tests/b.py::t[x - y]"]
    assert stages[cut + 1:][-1] == "tests/a.py" and "--slow-last" in stages[cut + 1:]
    plain = shlex.split(server.command(tmp_path, ["tests/a.py"], ["src/m.py"]))
    assert "--then" not in plain
