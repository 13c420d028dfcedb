"""mutation/forkserver.py: a warm server forks one pytest child per stage of a request, stops at
the first stage that fails and says which stage decided."""

import subprocess
import sys

import pytest

from mutation_helpers import MUTATION, load_mutation_module

_forkserver = load_mutation_module("forkserver")
PASSED_STATUSES, request, split_stages, stop = (_forkserver.PASSED_STATUSES, _forkserver.request,
                                                _forkserver.split_stages, _forkserver.stop)
decided_stage, STAGE_LINE = _forkserver.decided_stage, _forkserver.STAGE_LINE

TESTS = '''\
def test_passes():
    assert True


def test_fails():
    assert 1 == 2
'''


def test_split_stages_cuts_at_then():
    assert split_stages(["-x", "a", "--then", "-q", "b", "--then", "c"]) == [["-x", "a"], ["-q", "b"], ["c"]]
    assert split_stages(["-x", "a"]) == [["-x", "a"]]


def test_the_deciding_stage_is_read_from_the_last_line_only():
    assert decided_stage(f"x\n{STAGE_LINE} 1/2\n") == (1, 2)
    assert decided_stage(f"{STAGE_LINE} 2/2") == (2, 2)
    assert decided_stage(f"{STAGE_LINE} 1/2\nmore output\n") is None
    assert decided_stage("") is None


@pytest.fixture()
def server(tmp_path):
    (tmp_path / "test_sample.py").write_text(TESTS)
    sock = str(tmp_path / "s.sock")
    proc = subprocess.Popen([sys.executable, str(MUTATION / "forkserver.py"), "serve", sock,
                             "--preload", "pytest"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield sock
        stop(sock)
        proc.wait(timeout=60)
    finally:
        proc.kill()


def _stage(*nodes):
    return ["-q", "-p", "no:cacheprovider", *nodes]


def test_stages_run_until_one_fails_and_the_deciding_stage_is_reported(server, tmp_path):
    cwd = str(tmp_path)
    rc, stage, output = request(server, cwd, [_stage("test_sample.py::test_fails"),
                                              _stage("test_sample.py::test_passes")], [])
    assert (rc, stage) == (1, 1)
    assert "1 failed" in output and "passed" not in output  # the second stage never ran
    rc, stage, output = request(server, cwd, [_stage("test_sample.py::test_passes"),
                                              _stage("test_sample.py::test_fails")], [])
    assert (rc, stage) == (1, 2)
    assert output.index("1 passed") < output.index("1 failed")  # both stages' output, in order
    # a node id no longer collected (usage error) is no verdict: the next stage decides
    assert 4 in PASSED_STATUSES and 1 not in PASSED_STATUSES
    rc, stage, _ = request(server, cwd, [_stage("test_sample.py::test_gone"),
                                         _stage("test_sample.py::test_passes")], [])
    assert (rc, stage) == (0, 2)
    assert request(server, cwd, [_stage("test_sample.py")], [])[:2] == (1, 1)
    # nothing collected (5) passes on; a collection error (2) decides
    assert 5 in PASSED_STATUSES and 2 not in PASSED_STATUSES and 3 not in PASSED_STATUSES
    rc, stage, _ = request(server, cwd, [_stage("-k", "nothing_matches", "test_sample.py"),
                                         _stage("test_sample.py::test_passes")], [])
    assert (rc, stage) == (0, 2)
    (tmp_path / "test_broken.py").write_text("def test_x(:\n")
    rc, stage, _ = request(server, cwd, [_stage("test_broken.py"), _stage("test_sample.py::test_passes")], [])
    assert (rc, stage) == (2, 1)


def test_the_client_exits_with_the_deciding_status_and_says_which_stage(server, tmp_path):
    done = subprocess.run([sys.executable, str(MUTATION / "forkserver.py"), "client", server, str(tmp_path), "",
                           "--", *_stage("test_sample.py::test_passes"),
                           "--then", *_stage("test_sample.py::test_fails")],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert decided_stage(done.stdout) == (2, 2) and "1 failed" in done.stdout
