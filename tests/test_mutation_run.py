"""mutation/run.py's choice of groups to run: ``--changed`` skips a group whose stored session is
finished and whose modules are byte-for-byte those it mutated."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def run_module(tmp_path, monkeypatch):
    """mutation/run.py loaded under its own name, its build folder in ``tmp_path``; the ``report``
    module it imports is dropped again (it would shadow benchmarks/report.py for later tests)."""
    saved_path, saved_report = list(sys.path), sys.modules.pop("report", None)
    spec = importlib.util.spec_from_file_location("mutation_run", ROOT / "mutation" / "run.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("report", None)
        if saved_report is not None:
            sys.modules["report"] = saved_report
    monkeypatch.setattr(module, "BUILD", tmp_path / "build")
    return module


def _group(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("x = 1\n")
    return {"modules": [str(source)]}  # absolute: ROOT / absolute path is that path


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
