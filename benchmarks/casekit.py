"""What the benchmark scripts share: each case runs in a fresh interpreter (the script itself with
``--_case JSON``), measures its own peak memory and prints one tagged JSON result line.

* inside a case: :class:`PeakMeter` (peak memory above a baseline) on :func:`read_status_kib`,
  :func:`reset_peak_rss`, :func:`peak_rss_bytes` (Linux ``/proc/self`` with ``getrusage`` as the
  fallback), and :func:`trim_heap`;
* in the parent: :func:`run_case_process` (runs one case, parses its result line, classifies a
  failure), :func:`run_cases` (several cases in one interpreter, one result line each, with a
  retry when the interpreter itself was missing), :func:`child_env` (this checkout's ``src`` first),
  :func:`mem_available`, :func:`command_line`, :func:`package_versions` and
  :func:`environment_info` (machine and versions for the report);
* the options every script has: :func:`add_run_args` and :func:`output_paths`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULT_TAG = "@@RESULT "
MiB = float(1 << 20)
ROOT = Path(__file__).resolve().parent.parent


def read_status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or ``None``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def trim_heap() -> bool:
    """Hand freed heap memory back to the kernel (glibc ``malloc_trim``), so that a resident size
    taken as a baseline counts live memory only, not what earlier setup work freed but the
    allocator kept (which differs between cases)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def peak_rss_bytes() -> int:
    """Peak resident size of this process since the last :func:`reset_peak_rss`."""
    hwm = read_status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMeter:
    """Peak memory of this process above a baseline taken at creation: ``max_memory_allocated``
    on CUDA, the peak RSS on CPU. :meth:`reset` starts a new peak, :meth:`peak` reads it."""

    def __init__(self, cuda: bool, device=None):
        import torch

        self.torch, self.cuda, self.device = torch, cuda, device
        self.reset()
        self.base = int(torch.cuda.memory_allocated(device) if cuda else (read_status_kib("VmRSS") or 0) * 1024)

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()

    def peak(self) -> int:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            return int(self.torch.cuda.max_memory_allocated(self.device) - self.base)
        return int(peak_rss_bytes() - self.base)


def terminate(signum, frame):
    """SIGTERM handler of a case: exit (so ``finally`` blocks run) with the usual code."""
    raise SystemExit(128 + signum)


def run_case_process(script: str, case: dict, timeout: float, env: dict, note_chars: int) -> dict:
    """Run ``python SCRIPT --_case JSON`` and return its result dict (with ``wall_s``), or a
    failure: ``{"status": "timeout" | "did not fit" | "error", "note", "retry", "stderr_tail"}``
    where ``retry`` says the interpreter's packages were missing (an environment being rebuilt)."""
    cmd = [sys.executable, script, "--_case", json.dumps(case)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"status": "timeout", "note": f"exceeded {timeout:.0f} s"}
    finally:
        if proc.poll() is None:  # interrupted: do not leave the case running
            proc.kill()
            proc.wait()
    for line in stdout.splitlines():
        if line.startswith(RESULT_TAG):
            out = json.loads(line[len(RESULT_TAG):])
            out["wall_s"] = time.time() - t0
            return out
    return _classify(proc.returncode, stderr, note_chars)


def run_cases(script: str, cases: list, timeout: float, env: dict, note_chars: int = 300, retries: int = 1) -> list:
    """Run ``python SCRIPT --_case JSON-LIST`` (the child prints one tagged result line per case,
    in order) and return one result per case; cases without a result line get the failure.
    Retried once when the interpreter or its packages were missing (an environment being
    rebuilt under a long run), not when a case failed."""
    for attempt in range(retries + 1):
        t0 = time.time()
        while not os.path.exists(sys.executable) and time.time() - t0 < 900:
            time.sleep(10)
        cmd = [sys.executable, script, "--_case", json.dumps(cases)]
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout * len(cases))
        except subprocess.TimeoutExpired:
            return [{"status": "timeout", "note": f"exceeded {timeout:.0f} s per case"} for _ in cases]
        except FileNotFoundError as exc:
            proc, failure = None, {"status": "error", "note": f"interpreter unavailable: {exc}", "retry": True}
        results = []
        if proc is not None:
            for line in proc.stdout.splitlines():
                if line.startswith(RESULT_TAG):
                    results.append(json.loads(line[len(RESULT_TAG):]))
            failure = _classify(proc.returncode, proc.stderr, note_chars)
        if len(results) == len(cases) or not failure.get("retry") or attempt == retries:
            wall = (time.time() - t0) / max(len(results), 1)
            for res in results:
                res.setdefault("wall_s", wall)
            failure.pop("retry", None)
            failure.pop("stderr_tail", None)
            return results + [dict(failure) for _ in cases[len(results):]]
        time.sleep(60)
    return []


def _classify(returncode: int, stderr: str, note_chars: int) -> dict:
    """The failure of a case process that printed no result: did not fit, or an error."""
    err = (stderr or "").strip().splitlines()
    tail = err[-1] if err else ""
    text = (stderr or "").lower()
    if returncode in (-9, 137) or "out of memory" in text or "can't allocate memory" in text:
        return {"status": "did not fit", "note": f"exit {returncode}: {tail}"[:note_chars]}
    missing = "modulenotfounderror" in text or "importerror" in text or "no such file" in text
    return {"status": "error", "note": f"exit {returncode}: {tail}"[:note_chars], "retry": missing,
            "stderr_tail": "\n".join(err[-15:])}


def mem_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, or ``None``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def command_line(script: str, argv) -> str:
    """``python SCRIPT ARGS...`` as typed from the repository root (for the reports)."""
    import shlex

    root = Path(script).resolve().parent.parent
    args = sys.argv[1:] if argv is None else list(argv)
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(script, root)] + args)


def environment_info(device: str, versions: dict, torch_threads: int) -> dict:
    """Date, Python, the given package versions, CPU model and cores, torch threads, memory,
    device (and the GPU's name on CUDA), in that order."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        **versions,
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch_threads,
        "mem_total_gib": round((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**30, 1),
        "device": device,
    }
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


def child_env(threads: int | None = None) -> dict:
    """The environment of a case process: this checkout's ``src`` first on ``PYTHONPATH`` and, when
    ``threads`` is given, that many OpenMP / MKL threads."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def package_versions(names) -> dict:
    """``{name: version or None}`` of installed distributions."""
    import importlib.metadata

    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def add_run_args(ap: argparse.ArgumentParser, name: str, timeout: float) -> None:
    """The options every benchmark script has: device, threads, seed, the per-case timeout, where
    the results go, and the hidden ``--_case`` a case process is started with."""
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=timeout, help="seconds per case")
    ap.add_argument("--out", default=None, help=f"results JSON (default benchmarks/results/{name}_<device>.json)")
    ap.add_argument("--markdown", default=None, help="markdown report (default: next to --out)")
    ap.add_argument("--_case", default=None, help=argparse.SUPPRESS)


def output_paths(args, name: str) -> tuple[Path, Path]:
    """``(results JSON, markdown)`` of :func:`add_run_args`' ``--out`` and ``--markdown``."""
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"{name}_{args.device}.json")
    return out, Path(args.markdown) if args.markdown else out.with_suffix(".md")
