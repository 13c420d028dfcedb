"""The output folder of one evaluation: one evaluation per folder, a lock, resumable samples.

Files in ``--out DIR``:

* ``eval.json`` — the resolved settings and their ``settings_hash`` (settings and input files);
  written first. A folder whose ``eval.json`` has the same hash is this evaluation: a re-run resumes
  it. A non-empty folder without it, or with another hash, is refused unless ``overwrite``.
* ``generations.jsonl`` — append-only, one line per sample, keyed by (benchmark, problem id, sample
  index); lines are appended a chunk of problems at a time and flushed, so a killed run keeps every
  finished chunk (a torn last line is dropped on resume).
* ``results.partial.json`` (benchmarks finished so far) and ``results.json`` (all done).
* ``.lock`` — the pid of the process writing the folder; a second process is refused, a lock left by
  a dead process is taken over.

``resume`` (``deft eval --resume``) continues the evaluation in the folder as ``deft train --resume``
continues a run: :meth:`RunFolder.state` tells a finished evaluation (left unchanged) from a started
one (its samples reused) and a new one (started from scratch); another evaluation is refused with a
message that names ``--overwrite``.

Every file is world-readable (0644); JSON files are written atomically (:mod:`deft.io`).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, json_safe

__all__ = ["RunFolder", "sample_key"]

_OURS = ("eval.json", "generations.jsonl", "results.json", "results.partial.json")


def sample_key(benchmark: str, problem_id: str, sample: int) -> tuple[str, str, int]:
    """The key of one generated sample."""
    return (str(benchmark), str(problem_id), int(sample))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolder:
    """``--out DIR`` of one evaluation (see the module docstring). Use as a context manager: the
    lock is taken on entry (after the folder is checked) and released on exit."""

    def __init__(self, path: str | os.PathLike, settings: dict, settings_hash: str, *, overwrite: bool = False,
                 resume: bool = False):
        self.path = Path(path)
        self.settings = settings
        self.hash = settings_hash
        self.overwrite = overwrite
        self.resume = resume
        self.lock = self.path / ".lock"
        self.generations = self.path / "generations.jsonl"
        self._locked = False

    # ------------------------------------------------------------ checks and lock

    def check(self) -> None:
        """Raise a one-line ``ValueError`` when the folder is a file or holds another evaluation
        (and ``overwrite`` is off). Reads only; call before loading a model."""
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--out {self.path} is a file; pass a folder")
        if not self.path.is_dir():
            return
        entries = [p.name for p in self.path.iterdir() if p.name != ".lock"]
        if not entries or self._same_evaluation() or self.overwrite or entries == ["eval.json"]:
            return  # (settings alone, no samples or results: nothing to lose)
        if "eval.json" not in entries:
            what = "files of something else"
        else:
            old = (self._recorded() or {}).get("settings") or {}
            changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            what = (f"another evaluation (settings differ: {', '.join(changed[:4])})" if changed
                    else "another evaluation (its input files have changed)")
        if self.resume:
            raise ValueError(f"--out {self.path} holds {what}; --resume continues only the same evaluation: drop "
                             "--resume and pass --overwrite to replace it, or choose another --out")
        raise ValueError(f"--out {self.path} holds {what}; pass --overwrite to replace it, or choose another --out")

    def state(self) -> str:
        """``"finished"`` (this evaluation's ``results.json`` is there), ``"started"`` (this evaluation,
        not finished) or ``"new"`` (nothing of it yet: an empty or missing folder, settings alone, or
        another evaluation). Reads only."""
        if not self.path.is_dir() or not self._same_evaluation():
            return "new"
        if (self.path / "results.json").is_file():
            return "finished"
        names = {p.name for p in self.path.iterdir()} & {"generations.jsonl", "results.partial.json"}
        return "started" if names else "new"

    def saved_results(self) -> dict:
        """The ``results.json`` of a finished evaluation."""
        return json.loads((self.path / "results.json").read_text(encoding="utf-8"))

    def _recorded(self) -> dict | None:
        try:
            data = json.loads((self.path / "eval.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _same_evaluation(self) -> bool:
        return (self._recorded() or {}).get("settings_hash") == self.hash

    def _take_lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    raise
                try:
                    pid = int(self.lock.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise ValueError(f"--out {self.path} is in use by another deft eval (pid {pid}); wait for it "
                                     "or choose another --out") from None
                self.lock.unlink(missing_ok=True)  # a stale lock of a dead process
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self._locked = True
            return
        raise ValueError(f"--out {self.path}: could not take the lock {self.lock}")

    def __enter__(self) -> "RunFolder":
        self.check()
        self._take_lock()
        if not self._same_evaluation():  # new, or replaced with --overwrite
            for name in _OURS:
                (self.path / name).unlink(missing_ok=True)
            atomic_write_json(self.path / "eval.json", {"settings_hash": self.hash, "settings": self.settings})
        return self

    def __exit__(self, *exc) -> None:
        if self._locked:
            self.lock.unlink(missing_ok=True)
            self._locked = False

    # ------------------------------------------------------------ samples

    def finished_samples(self) -> dict[tuple[str, str, int], dict]:
        """The samples of earlier runs of this evaluation, by :func:`sample_key`. A torn last line
        (a run killed while writing) is cut from the file."""
        if not self.generations.is_file():
            return {}
        data = self.generations.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # drop a partly written last line
            with open(self.generations, "r+b") as f:
                f.truncate(end)
            data = data[:end]
        out = {}
        for line in data.decode("utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                out[sample_key(rec["benchmark"], rec["id"], rec["sample"])] = rec
        return out

    def append(self, lines: list[dict]) -> None:
        """Append sample lines in one write, flushed to disk."""
        if not lines:
            return
        text = "".join(json.dumps(json_safe(line), ensure_ascii=False) + "\n" for line in lines)
        fd = os.open(self.generations, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(self.generations, 0o644)

    def write_results(self, results: dict[str, Any], *, final: bool) -> Path:
        """``results.json`` (``final``; the partial file is removed) or ``results.partial.json``."""
        if final:
            path = atomic_write_json(self.path / "results.json", results)
            (self.path / "results.partial.json").unlink(missing_ok=True)
            return path
        return atomic_write_json(self.path / "results.partial.json", results)
