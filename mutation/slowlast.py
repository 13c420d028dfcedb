"""pytest plugin of the mutation runner: the unmutated run records how long each test takes, and
every mutant's run moves the slow tests to the end of its selection.

A mutant's run stops at its first failing test (``-x``), so a killed mutant costs the tests that
run before the one that kills it. A few tests cost seconds where the rest cost milliseconds (those
that compile the fused kernel with ``torch.compile`` in every fresh process, or train a tiny model);
run first, they are paid by nearly every mutant, also those a fast test kills. Moved last, they run
only for the mutants the fast tests did not kill. The selection's order is kept otherwise: the
fast tests in the order ``mutation/modules.toml`` gives (sharpest first), then the slow ones,
fastest first. A test counts as slow from ``SLOW_SECONDS`` (its setup, call and teardown together
in the unmutated run).

    pytest -p slowlast --record-durations FILE ...   # the unmutated run: write {node id: seconds}
    pytest -p slowlast --slow-last FILE ...          # a mutant's run: reorder by FILE
"""

from __future__ import annotations

import json
import os

SLOW_SECONDS = 0.25


def pytest_addoption(parser):
    group = parser.getgroup("slowlast", "mutation runner: slow tests last")
    group.addoption("--record-durations", metavar="FILE", help="write each test's duration (seconds) to FILE (JSON)")
    group.addoption("--slow-last", metavar="FILE", help="run the tests FILE records as slow after the others")


def slow_last_order(node_ids: list[str], durations: dict[str, float], slow: float = SLOW_SECONDS) -> list[int]:
    """Positions of ``node_ids`` in run order: the tests under ``slow`` seconds (or not measured) in
    their given order, then the others by ascending duration."""
    fast = [i for i, node in enumerate(node_ids) if durations.get(node, 0.0) < slow]
    late = sorted((i for i, node in enumerate(node_ids) if durations.get(node, 0.0) >= slow),
                  key=lambda i: (durations[node_ids[i]], i))
    return fast + late


def pytest_collection_modifyitems(config, items):
    path = config.getoption("slow_last")
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        durations = json.load(f)
    order = slow_last_order([item.nodeid for item in items], durations)
    items[:] = [items[i] for i in order]


_DURATIONS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    _DURATIONS[report.nodeid] = _DURATIONS.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    path = session.config.getoption("record_durations")
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(_DURATIONS, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
