"""mutation/forkserver.py: a warm server forks one pytest child per stage of a request, stops at
the first stage that fails and says which stage decided."""

import subprocess
import sys

import pytest

from mutation_helpers import MUTATION, load_mutation_module

_forkserver = load_mutation_module("forkserver")
PASSED_STATUSES, request, split_stages, stop = (_forkserver.PASSED_STATUSES, _forkserver.request,
                                                _forkserver.split_stages, _forkserver.stop)

TESTS = '''\
def test_passes():
    assert True


def test_fails():
    assert 1 == 2
'''


def test_split_stages_cuts_at_then():
    assert split_stages(["-x", "a", "--then", "-q", "b", "--then", "c"]) == [["-x", "a"], ["-q", "b"], ["c"]]
    assert split_stages(["-x", "a"]) == [["-x", "a"]]


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
