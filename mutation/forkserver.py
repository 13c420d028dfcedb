"""Run pytest for each mutant in a forked child of one warm process.

Importing torch costs seconds; a mutant's test selection often fails within a second. The
server imports the heavy libraries once (never ``deft``: each child imports the freshly mutated
source from disk; the third-party modules that collecting the test selection imports are found in
a throwaway child and imported too), then forks one child per request; the child runs ``pytest.main(args)`` and
its exit status goes back to the client. A request may hold several *stages* (pytest argument
lists, e.g. a mutant's likely killers, then its whole test selection): each runs in its own child
until one fails; the last one's status stands when all the earlier ones pass. A client that dies
(cosmic-ray's timeout kills it) makes the server kill the child's whole process group.

    python mutation/forkserver.py serve SOCKET --preload torch,numpy [--warm-compile] [-- TESTS...]
    python mutation/forkserver.py client SOCKET CWD MUTATED_FILES -- PYTEST_ARGS... [--then PYTEST_ARGS...]
                                             # exit status = pytest's; the last line says the deciding stage
    python mutation/forkserver.py stop SOCKET
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys
import tempfile

__all__ = ["decided_stage", "serve", "request", "split_stages", "stop", "STAGE_LINE"]

STAGE_LINE = "[forkserver] decided by stage"


# exit statuses of a stage that did not fail: passed, usage error (e.g. a node id no longer
# collected), nothing collected; any other status of an earlier stage decides the request
PASSED_STATUSES = (0, 4, 5)


def _child(request: dict, args: list[str]) -> None:
    """In the forked child: run pytest ``args`` in the request's folder, output appended to its log."""
    os.setsid()
    os.chdir(request["cwd"])
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    rc = 98
    try:
        import pytest

        rc = int(pytest.main(args))
    except BaseException:  # noqa: BLE001 - anything a mutant raises is a failed run
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _wait(pid: int, conn: socket.socket) -> int:
    """Exit status of ``pid``; kill its process group if the client goes away first."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and not conn.recv(1):  # EOF: the client was killed (timeout)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return -signal.SIGKILL


def _collected_modules(tests: list[str]) -> list[str]:
    """Modules that collecting ``tests`` imports, in import order, found in a throwaway child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            import pytest

            pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *tests])
            os.write(write, "\n".join(sys.modules).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        names = f.read().split()
    os.waitpid(pid, 0)
    return names


def _preload(preload: list[str], tests: list[str]) -> None:
    """Import ``preload`` and the third-party modules the test selection imports (never deft,
    the tests or anything else under the working directory: those are what the mutants change)."""
    import importlib

    for name in preload:
        importlib.import_module(name)
    here = os.getcwd()
    for name in _collected_modules(tests) if tests else []:
        if name in sys.modules or name == "deft" or name.startswith("deft.") or "test" in name.split(".")[0]:
            continue
        try:
            module = importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - a module that can't be imported alone is just not preloaded
            continue
        if str(getattr(module, "__file__", "") or "").startswith(here):
            raise RuntimeError(f"preloaded a module of the working copy: {name}")


def _drop_bytecode(modules: list[str]) -> None:
    """Remove the cached bytecode of the mutated modules: a mutant of the same size written in
    the same second as the previous one would otherwise be read back from a stale ``.pyc``.
    The other modules keep theirs, so a child compiles only the one file that changed."""
    for module in modules:
        cache = os.path.join(os.path.dirname(module), "__pycache__")
        stem = os.path.splitext(os.path.basename(module))[0] + "."
        if os.path.isdir(cache):
            for name in os.listdir(cache):
                if name.startswith(stem):
                    os.unlink(os.path.join(cache, name))


def _warm_compile() -> None:
    """Compile a small function with ``torch.compile`` (dynamic shapes, full graph, as the fused
    kernel does): the first compilation in a process sets up dynamo, inductor and the C++
    toolchain checks for about 2 s, which each child would otherwise pay again."""
    import torch

    def softmax_stats(z, y):
        e = torch.exp(z - z.amax(-1, keepdim=True))
        return torch.log(e.sum(-1)), torch.where(e > 0, e, torch.zeros_like(e)).gather(-1, y.unsqueeze(-1))

    torch.compile(softmax_stats, dynamic=True, fullgraph=True)(torch.randn(3, 5), torch.tensor([0, 4, 2]))


def serve(path: str, preload: list[str], tests: list[str], warm_compile: bool = False) -> None:
    """Import the heavy modules (and with ``warm_compile`` set up ``torch.compile``), then answer
    requests until a ``stop`` request comes."""
    _preload(preload, tests)
    if warm_compile:
        _warm_compile()
    # Every preloaded object lives as long as the server: out of the collector's sight, a child's
    # collections (pytest runs gc.collect() in each session) scan only what the child made, and
    # never touch (copy) the parent's pages. With torch and transformers loaded this cuts a
    # mutant's pytest run about threefold.
    gc.freeze()
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    server.settimeout(5.0)
    parent = os.getppid()
    print("ready", flush=True)
    while True:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the runner died without stopping us
                break
            continue
        conn.settimeout(None)
        with conn:
            request = json.loads(conn.makefile("r").readline())
            if request.get("stop"):
                conn.sendall(b"0\n")
                break
            _drop_bytecode(request.get("mutated", []))
            stages = request.get("stages") or []
            rc, stage = 2, 0  # no stage: a malformed request fails
            for stage, args in enumerate(stages, 1):
                pid = os.fork()
                if pid == 0:
                    server.close()
                    _child(request, args)
                rc = _wait(pid, conn)
                if rc not in PASSED_STATUSES:
                    break
            try:
                conn.sendall(f"{rc} {stage}\n".encode())
            except OSError:
                pass
    server.close()
    os.unlink(path)


def request(path: str, cwd: str, stages: list[list[str]], mutated: list[str]) -> tuple[int, int, str]:
    """Run the pytest argument lists ``stages`` in ``cwd`` through the server, each until one fails:
    ``(exit status, deciding stage (1-based), output of all stages run)``; ``mutated`` are the
    files whose bytecode must not be reused."""
    with tempfile.NamedTemporaryFile("r", suffix=".log", delete=False) as log:
        log_path = log.name
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            message = {"cwd": cwd, "stages": stages, "log": log_path, "mutated": mutated}
            conn.sendall((json.dumps(message) + "\n").encode())
            answer = conn.makefile("r").readline().split()
        with open(log_path, errors="replace") as f:
            output = f.read()
    finally:
        os.unlink(log_path)
    if len(answer) != 2:
        return 97, 0, output
    return int(answer[0]), int(answer[1]), output


def decided_stage(output: str) -> tuple[int, int] | None:
    """``(stage, stages)`` from the last line the client writes (``STAGE_LINE k/n``), or None."""
    last = output.rstrip().rpartition("\n")[2]
    if not last.startswith(STAGE_LINE):
        return None
    stage, _, stages = last[len(STAGE_LINE):].strip().partition("/")
    return int(stage), int(stages)


def split_stages(args: list[str]) -> list[list[str]]:
    """``A... --then B... --then C...`` -> ``[[A...], [B...], [C...]]``."""
    stages: list[list[str]] = [[]]
    for arg in args:
        if arg == "--then":
            stages.append([])
        else:
            stages[-1].append(arg)
    return stages


def stop(path: str) -> None:
    """Ask the server to exit."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        conn.sendall(b'{"stop": true}\n')
        conn.makefile("r").readline()


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "serve" and argv[2] == "--preload":
        rest = argv[4:]
        warm = bool(rest) and rest[0] == "--warm-compile"
        rest = rest[1:] if warm else rest
        tests = rest[1:] if rest and rest[0] == "--" else []
        serve(argv[1], [m for m in argv[3].split(",") if m], tests, warm_compile=warm)
        return 0
    if len(argv) >= 5 and argv[0] == "client" and argv[4] == "--":
        stages = split_stages(argv[5:])
        rc, stage, output = request(argv[1], argv[2], stages, [m for m in argv[3].split(",") if m])
        sys.stdout.write(output[-20000:])
        sys.stdout.write(f"\n{STAGE_LINE} {stage}/{len(stages)}\n")
        return rc
    if len(argv) == 2 and argv[0] == "stop":
        stop(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
