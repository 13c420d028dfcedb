"""The output folder of one ``deft train`` run: one run per folder, a lock, resume bookkeeping.

Layout of ``OUT/``: ``config.yaml``, ``metrics.jsonl`` (one line per optimizer step),
``checkpoint-N/`` (complete checkpoints only: each is written under ``.staging/`` and renamed into
place), ``final/`` (the model, written in one rename), ``summary.json`` and ``tensorboard/``.

* **One run per folder.** A fresh run refuses a folder that already holds a run (naming
  ``--resume`` and ``--overwrite``) and a folder holding files that are not from a run (``*.log``
  files, written by wrappers such as ``deft compare``, are allowed). ``--overwrite`` deletes the
  run's files, never anything else.
* **Lock.** ``OUT/.deft.lock`` holds the pid and host of the process writing to the folder; it is
  created with ``O_EXCL``, so a second process is refused. The lock of a dead process on this host
  is recognised as stale and taken over.
* **Finished runs.** A run is finished once ``final/`` exists (it appears in one rename, complete).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Optional

__all__ = ["LOCK_NAME", "RunLock", "latest_checkpoint", "is_finished", "prepare_fresh_folder",
           "truncate_metrics", "read_metrics", "mean_loss"]

LOCK_NAME = ".deft.lock"
_RUN_FILES = {"config.yaml", "metrics.jsonl", "summary.json", "final", "final.tmp", "final.old", ".staging",
              "tensorboard"}


def _is_run_file(path: Path) -> bool:
    name = path.name
    return name in _RUN_FILES or (name.startswith("checkpoint-") and name.split("-", 1)[1].isdigit())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_lock(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class RunLock:
    """``OUT/.deft.lock``: taken with :meth:`acquire`, given back with :meth:`release` (or as a
    context manager). Raises ``ValueError`` naming the holder when another live process has it."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.mine = {"pid": os.getpid(), "host": socket.gethostname()}
        self.held = False
        self.record: Optional[dict] = None

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(self.path)
                if holder is None and self.path.exists() and time.time() - self.path.stat().st_mtime < 5:
                    time.sleep(0.2)  # being written by its owner right now
                    holder = _read_lock(self.path)
                if not self._stale(holder):
                    raise ValueError(self._busy_message(holder)) from None
                self._take_over(holder)
                continue
            self.record = {**self.mine, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            with os.fdopen(fd, "w") as f:
                json.dump(self.record, f)
            os.chmod(self.path, 0o644)
            self.held = True
            return self
        raise ValueError(self._busy_message(_read_lock(self.path)))

    def _stale(self, holder: Optional[dict]) -> bool:
        """A lock is stale when its process ran on this host and is gone (or the file is unreadable
        garbage left by a crash while it was being written)."""
        if holder is None:
            return self.path.exists()
        if holder.get("host") != self.mine["host"] or not isinstance(holder.get("pid"), int):
            return False
        return not _alive(holder["pid"])

    def _take_over(self, holder: Optional[dict]) -> None:
        """Move the stale lock aside in one rename (only one contender wins) and delete it; if what
        was moved is not the stale lock we judged (another process took it over in between), put it
        back and report the folder busy."""
        aside = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = _read_lock(aside)
        if holder is not None and moved != holder:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            raise ValueError(self._busy_message(moved))
        aside.unlink(missing_ok=True)

    def _busy_message(self, holder: Optional[dict]) -> str:
        who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
        return (f"{self.folder}: another 'deft train' ({who}) is writing to this folder (lock {self.path}); wait "
                f"for it to finish or choose another --out (delete the lock file only if that run is gone)")

    def release(self) -> None:
        if self.held and _read_lock(self.path) == self.record:  # never delete a lock taken over since
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def latest_checkpoint(output_dir: str | os.PathLike) -> Optional[str]:
    """The newest complete ``checkpoint-N`` directory, or ``None``."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    steps = [(int(p.name.split("-")[1]), p) for p in root.glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[1].isdigit() and (p / "trainer_state.json").exists()]
    return str(max(steps)[1]) if steps else None


def is_finished(output_dir: str | os.PathLike) -> bool:
    """Whether the run in ``output_dir`` wrote its ``final/`` model (complete: it is renamed into
    place only once written)."""
    return (Path(output_dir) / "final").is_dir()


def prepare_fresh_folder(output_dir: str | os.PathLike, overwrite: bool) -> None:
    """Make ``output_dir`` ready for a new run: refuse a folder holding another run (unless
    ``overwrite``, which deletes that run's files) or files that are not from a run."""
    root = Path(output_dir)
    if not root.is_dir():
        return
    entries = [p for p in root.iterdir() if p.name != LOCK_NAME and not p.name.endswith(".log")
               and not p.name.startswith(f"{LOCK_NAME}.")]
    foreign = sorted(p.name for p in entries if not _is_run_file(p))
    if foreign:
        raise ValueError(f"{root} holds files that are not from a deft run ({', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}): choose a new or empty --out")
    if not entries:
        return
    if not overwrite:
        names = sorted(p.name for p in entries)
        raise ValueError(f"{root} already holds a run ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}): "
                         "continue it with --resume, replace it with --overwrite, or choose another --out")
    for path in entries:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (empty when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: str | os.PathLike, step: int) -> None:
    """Keep only the metric lines up to ``step`` (resume after a crash; 0 clears the file)."""
    from ..io import atomic_write_text

    path = Path(path)
    if path.exists():
        keep = [row for row in read_metrics(path) if row.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in keep))


def mean_loss(path: str | os.PathLike) -> Optional[float]:
    """The mean ``loss`` over every step of ``metrics.jsonl`` (all of them, also those before a
    resume); ``None`` without steps."""
    losses = [row["loss"] for row in read_metrics(path) if row.get("loss") is not None]
    return sum(losses) / len(losses) if losses else None
