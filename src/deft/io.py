"""Small file helpers shared by every layer: atomic, world-readable writes and JSON-safe values.

Every file deft writes goes through :func:`atomic_open` (a file object to stream into) or its
one-call forms :func:`atomic_write_text` / :func:`atomic_write_json`, and every folder through
:func:`atomic_write_dir`: the content is written to a temporary file (folder) beside the target and
renamed into place, so a reader or a crash never sees half a file, and the result is readable by
everyone (files 0644, folders 0755), like files written by ``open()`` under the usual umask.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional

__all__ = ["atomic_open", "atomic_write_text", "atomic_write_json", "atomic_write_dir", "json_safe"]

_MODE = 0o644
_DIR_MODE = 0o755


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, encoding: str = "utf-8") -> Iterator[IO]:
    """A file object to stream into (``mode`` ``"w"``: text in ``encoding``, ``"wb"``: bytes) that
    becomes ``path`` in one rename when the ``with`` block ends without an exception.

    The temporary file lies in the same folder (``.NAME.XXXX.tmp``, so the rename never crosses a
    file system), is flushed to disk before the rename and made 0644; an exception inside the block
    removes it and leaves an existing ``path`` untouched. Missing parent folders are created.
    Example::

        with atomic_open(out / "records.jsonl") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if mode == "wb" else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, target)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` in one rename (see :func:`atomic_open`); returns the path."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``json_safe(obj)`` as JSON in one rename (NaN/inf become ``null``)."""
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n")


def atomic_write_dir(path: str | os.PathLike, writer: Callable[[Path], None], *,
                     keep_if: Optional[Callable[[Path], bool]] = None) -> Path:
    """Call ``writer(tmp_dir)`` and move the finished folder (0755) to ``path`` in one rename; an
    existing folder is replaced only once the new one is complete. If ``writer`` raises, the
    temporary folder is removed and ``path`` is left as it was.

    By default the temporary folder is ``NAME.tmp`` beside ``path`` (a run folder has one writer).
    With ``keep_if`` (for folders several processes may write at once, such as caches) each writer
    works in its own ``.NAME.tmp-XXXX`` folder, and when another process has meanwhile finished
    ``path`` and ``keep_if(path)`` is true, that copy is kept and this one discarded."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if keep_if is None:
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, _DIR_MODE)
        writer(tmp)
        if keep_if is not None:
            try:
                os.replace(tmp, target)  # fails when another writer's complete folder is there
                return target
            except OSError:
                if target.is_dir() and keep_if(target):
                    return target
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def json_safe(x: Any) -> Any:
    """``x`` with tuples/sets as lists, non-finite floats as ``None``, numpy/torch scalars as Python
    numbers and paths as strings, so that ``json.dumps(..., allow_nan=False)`` never fails."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    item = getattr(x, "item", None)
    if callable(item) and getattr(x, "ndim", 0) == 0:
        return json_safe(item())
    tolist = getattr(x, "tolist", None)
    if callable(tolist):
        return json_safe(tolist())
    return str(x)


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)
