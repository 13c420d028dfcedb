"""mutation/run.py: ``--changed`` skips a group whose stored session is finished and whose modules are
byte-for-byte those it mutated; a mutant's command runs its likely killers first, together in one
session; a first-stage kill counts only if that session passes on the unmutated code; under
``--jobs`` the report is left to the parent."""

import shlex
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
    pytest.importorskip("cosmic_ray")  # in the test and mutation extras
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


MODULE = """\
def f(a):
    return a * 3 + 1


def g(b):
    return b * 2


def h(c):
    return c - 1
"""


def test_a_first_stage_kill_counts_only_if_that_stage_passes_on_the_unmutated_code(run_module, tmp_path,
                                                                                   monkeypatch):
    """f's tests kill most, so they are tried first on h's mutants, together with g's: test_f
    leaves a side effect that makes test_g fail after it in one session (never in the group's
    order). h is untested: its mutants must all survive, as they would on the whole selection."""
    pytest.importorskip("cosmic_ray")  # in the test and mutation extras
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "src" / "pkg" / "m.py").write_text(MODULE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_f.py").write_text(
        "import os\nfrom pkg.m import f\n\n\ndef test_f():\n    os.environ['DIRTY'] = '1'\n    assert f(1) == 4\n")
    (tmp_path / "tests" / "test_g.py").write_text(
        "import os\nfrom pkg.m import g\n\n\ndef test_g():\n    assert 'DIRTY' not in os.environ\n"
        "    assert g(3) == 6\n")
    group = {"modules": ["src/pkg/m.py"], "tests": ["tests/test_g.py", "tests/test_f.py"], "timeout": 60}
    monkeypatch.chdir(tmp_path)  # cosmic-ray mutates module paths relative to the working directory
    server = run_module.Server(tmp_path, ["pytest"], [])
    try:
        run_module.init_session(tmp_path, group)
        run_module.execute(tmp_path, server, group, survivors_only=False)
    finally:
        server.close()
    with use_db(str(tmp_path / "session.sqlite"), WorkDB.Mode.open) as db:
        results = {}
        for item, result in db.completed_work_items:
            results.setdefault(item.mutations[0].start_pos[0], []).append(result)
        assert not run_module.unchecked_first_stage_kills(db)
    assert {r.test_outcome for r in results[2] + results[6]} == {TestOutcome.KILLED}
    assert {r.test_outcome for r in results[10]} == {TestOutcome.SURVIVED}
    assert (tmp_path / "src" / "pkg" / "m.py").read_text() == MODULE
    # the kills of f's later mutants by its own killer, tried first, passed the check
    checked_line = load_mutation_module("killers").FIRST_STAGE_CHECKED
    checked = [r for r in results[2] + results[6] if checked_line in (r.output or "")]
    assert checked and all("[forkserver] decided by stage 1/2" in r.output for r in checked)


def test_each_group_process_under_jobs_leaves_the_report_to_the_parent(run_module):
    args = run_module.group_process_args("metrics", ["--resume"])
    assert args[-1] == "metrics" and "--no-report" in args and "--resume" in args


def test_a_command_with_likely_killers_runs_them_first(run_module, tmp_path):
    server = object.__new__(run_module.Server)
    server.socket = "s.sock"
    stages = shlex.split(server.command(tmp_path, ["tests/a.py"], ["src/m.py"], first=["tests/b.py::t[x - y]"]))
    stages = stages[stages.index("--") + 1:]
    cut = stages.index("--then")
    assert stages[:cut] == [*run_module.PYTEST_ARGS, "tests/b.py::t[x - y]"]
    assert stages[cut + 1:][-1] == "tests/a.py" and "--slow-last" in stages[cut + 1:]
    plain = shlex.split(server.command(tmp_path, ["tests/a.py"], ["src/m.py"]))
    assert "--then" not in plain
