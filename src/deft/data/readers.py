"""Read rows from JSONL, JSON, Parquet and HF ``datasets`` (a local ``save_to_disk`` directory or a
hub id), one at a time, and write record files.

Every row comes with where it is: ``FILE:LINE`` for JSONL (the line number), ``FILE:N`` for the
other formats (the 1-based row number), ``ID[split]:N`` for hub datasets. JSONL, Parquet and HF
datasets are streamed (line by line, Arrow record batches, memory-mapped Arrow); a JSON file (one
array) is parsed whole, so prefer JSONL for large data.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .records import RecordError, normalize_record

__all__ = ["iter_rows", "iter_records", "write_jsonl", "count_rows"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_JSONL = (".jsonl", ".ndjson", ".jsonl.txt")


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                yield where, RecordError(f"malformed JSON ({err.msg} at column {err.colno})", where)


def _json_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        # a JSON Lines file with a .json name is common: fall back to it
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        try:
            json.loads(first)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{err.lineno}: malformed JSON ({err.msg}); expected an array of objects or JSON Lines") from None
        yield from _jsonl_rows(path)
        return
    if isinstance(data, Mapping):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ValueError(f"{path}: expected a JSON array of records (or an object holding exactly one array)")
        data = lists[0]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
    for i, row in enumerate(data, 1):
        yield f"{path}:{i}", row


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            n += 1
            yield f"{path}:{n}", row


def _dataset_rows(ds, name: str) -> Iterator[tuple[str, Any]]:
    for i, row in enumerate(ds, 1):
        yield f"{name}:{i}", row


def _pick_split(dsdict, split: str, name: str):
    if split in dsdict:
        return dsdict[split]
    raise ValueError(f"{name}: no split {split!r}; it has {', '.join(dsdict)} (use --split)")


def _hub_rows(dataset_id: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    from ..model.loading import hub_reachable

    if not hub_reachable():
        raise ValueError(
            f"could not open the dataset '{dataset_id}': the Hugging Face hub is unreachable; pass a local "
            f"JSONL / JSON / Parquet file or a datasets save_to_disk directory"
        )
    try:
        ds = datasets.load_dataset(dataset_id, split=split, streaming=True)
    except Exception as err:  # noqa: BLE001 - offline, missing or private datasets all become one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"could not open the dataset '{dataset_id}' (split {split!r}) from the Hugging Face hub ({first}); "
            f"without network access pass a local JSONL / JSON / Parquet file or a save_to_disk directory"
        ) from None
    yield from _dataset_rows(ds, f"{dataset_id}[{split}]")


def iter_rows(source: str | os.PathLike, *, split: str = "train") -> Iterator[tuple[str, Any]]:
    """Yield ``(where, row)`` for every row of a JSONL / JSON / Parquet file, a ``datasets``
    ``save_to_disk`` directory (``split`` picks from a ``DatasetDict``) or a hub dataset id.
    A malformed JSONL line yields a :class:`RecordError` instead of a row."""
    path = Path(source).expanduser()
    name = str(source)
    if path.is_file():
        lower = path.name.lower()
        if lower.endswith(_JSONL):
            return _jsonl_rows(path)
        if lower.endswith(".json"):
            return _json_rows(path)
        if lower.endswith(".parquet"):
            return _parquet_rows(path)
        raise ValueError(f"{path}: unknown file type; use .jsonl, .json or .parquet (or a datasets directory)")
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise ValueError(f"{path}: not a datasets save_to_disk directory; pass a .jsonl, .json or .parquet file") from None
        if isinstance(ds, datasets.DatasetDict):
            ds = _pick_split(ds, split, name)
        return _dataset_rows(ds, name)
    if _HUB_ID.match(name) and not name.lower().endswith((".jsonl", ".json", ".parquet")):
        return _hub_rows(name, split)
    raise FileNotFoundError(f"{source}: no such file or directory (pass a .jsonl/.json/.parquet file, a datasets directory or a hub id)")


def iter_records(
    source: str | os.PathLike,
    *,
    key_map: Mapping[str, str] | None = None,
    keep_extra: bool = False,
    split: str = "train",
) -> Iterator[tuple[str, dict | RecordError]]:
    """Yield ``(where, record)`` with each row normalised by :func:`~deft.data.records.normalize_record`,
    or ``(where, RecordError)`` for a row that is not a valid record."""
    for where, row in iter_rows(source, split=split):
        if isinstance(row, RecordError):
            yield where, row
            continue
        try:
            yield where, normalize_record(row, key_map, keep_extra=keep_extra)
        except RecordError as err:
            yield where, err.at(where)


def count_rows(source: str | os.PathLike, *, split: str = "train") -> int:
    """Number of rows of a source (streams through it)."""
    return sum(1 for _ in iter_rows(source, split=split))


def _json_default(obj):
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return str(obj)


def write_jsonl(records: Iterable[Mapping], path: str | os.PathLike) -> int:
    """Write records as JSON Lines, atomically (a temporary file renamed into place). Returns the
    number written. Values JSON cannot hold (tuples, sets, numpy) are converted."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False, default=_json_default))
                f.write("\n")
                n += 1
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return n
