"""mutation/slowlast.py: the unmutated run records each test's duration, a mutant's run takes the
slow tests last (fast ones in their given order, slow ones fastest first)."""

import json
import subprocess
import sys


from mutation_helpers import MUTATION, load_mutation_module

_slowlast = load_mutation_module("slowlast")
SLOW_SECONDS, slow_last_order = _slowlast.SLOW_SECONDS, _slowlast.slow_last_order


def test_slow_tests_go_last_fastest_first_and_the_rest_keep_their_order():
    nodes = ["a", "b", "c", "d", "e"]
    durations = {"a": 3.0, "b": 0.01, "c": SLOW_SECONDS, "e": 0.1}  # d: not measured (new) counts as fast
    assert slow_last_order(nodes, durations) == [1, 3, 4, 2, 0]
    assert slow_last_order(nodes, {}) == [0, 1, 2, 3, 4]


def test_a_just_faster_test_keeps_its_place():
    assert slow_last_order(["a", "b"], {"a": SLOW_SECONDS * 0.99, "b": 0.0}) == [0, 1]


SLEEPY = '''
import time
def test_first_and_slow():
    time.sleep({slow})
def test_second():
    pass
def test_third():
    pass
'''


def _pytest(tmp_path, *args):
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "slowlast", "-p", "no:cacheprovider", "-v",
                           "-o", "addopts=", *args, "test_sleepy.py"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(MUTATION), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    return [line.split("::")[1].split()[0] for line in done.stdout.splitlines() if "::test_" in line]


def test_a_real_pytest_run_records_durations_and_reorders_by_them(tmp_path):
    (tmp_path / "test_sleepy.py").write_text(SLEEPY.format(slow=SLOW_SECONDS))
    durations = tmp_path / "durations.json"
    assert _pytest(tmp_path, "--record-durations", str(durations)) == ["test_first_and_slow", "test_second",
                                                                        "test_third"]
    recorded = json.loads(durations.read_text())
    assert sorted(recorded) == [f"test_sleepy.py::test_{name}" for name in ("first_and_slow", "second", "third")]
    assert recorded["test_sleepy.py::test_first_and_slow"] >= SLOW_SECONDS  # it sleeps that long
    # (the others' recorded times depend on the machine: the order is checked on fixed ones)
    durations.write_text(json.dumps({"test_sleepy.py::test_first_and_slow": 2.0, "test_sleepy.py::test_second": 0.5,
                                     "test_sleepy.py::test_third": 0.001}))
    assert _pytest(tmp_path, "--slow-last", str(durations)) == ["test_third", "test_second", "test_first_and_slow"]
    assert _pytest(tmp_path) == ["test_first_and_slow", "test_second", "test_third"]  # no file: as given
