"""The one record reader behind ``deft train``, ``probe``, ``eval`` and ``data``: rows from JSONL,
JSON (an array, or an object holding one), Parquet, CSV/TSV and HF ``datasets`` (a local
``save_to_disk`` directory or a hub id), one at a time; and the record-file writer.

Every row comes with where it is: ``FILE:LINE`` for JSONL (the line number), ``FILE: record N``
for the other formats (the 1-based record number), ``ID[split]: record N`` for hub datasets.
JSONL, CSV, Parquet and HF datasets are streamed (line by line, Arrow record batches,
memory-mapped Arrow); a JSON array is parsed whole, so prefer JSONL for large data.

The same rules everywhere: blank lines (JSONL) and empty rows (CSV) are skipped; a UTF-8 byte-order
mark at the start of a text file is accepted; bytes that are not UTF-8, or a byte-order mark further
on (files joined together), are errors naming the line and column, e.g.
``data.jsonl:3: not UTF-8 (byte 0xe9 at column 74); re-save the file as UTF-8``. A malformed
JSONL line or CSV row is a located problem of that record (the caller counts it); a file that
cannot be read at all raises ``ValueError``/``FileNotFoundError`` with one line.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..io import atomic_open, json_safe
from .records import RecordError, normalize_record, parse_key_map

__all__ = ["iter_rows", "iter_records", "write_jsonl", "count_rows", "check_output_path", "READABLE"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_JSONL = (".jsonl", ".ndjson", ".jsonl.txt")
_BOM = b"\xef\xbb\xbf"
#: what a record source may be, for messages
READABLE = ".jsonl, .json, .parquet, .csv or .tsv file, a datasets save_to_disk directory or a hub dataset id"


def _decode(raw: bytes, where: str, *, first: bool) -> str:
    """One line of bytes as text; a leading BOM on the first line is dropped. Raises RecordError
    located at ``where`` for bytes that are not UTF-8 or a BOM elsewhere."""
    if first and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        column = len(raw[: err.start].decode("utf-8", errors="replace")) + 1
        raise RecordError(f"not UTF-8 (byte 0x{raw[err.start]:02x} at column {column}); re-save the file as UTF-8",
                          where) from None
    if "\ufeff" in text:
        column = text.index("\ufeff") + 1
        raise RecordError(f"a byte-order mark (BOM) at column {column}, inside the file (files joined together?); "
                          f"remove it or re-save the file as UTF-8", where)
    return text


def _text_lines(path: Path) -> Iterator[tuple[int, str | RecordError]]:
    """``(line number, text or RecordError)`` for each line of a text file, newline dropped."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, _decode(raw.rstrip(b"\r\n"), f"{path}:{lineno}", first=lineno == 1)
            except RecordError as err:
                yield lineno, err


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    for lineno, line in _text_lines(path):
        where = f"{path}:{lineno}"
        if isinstance(line, RecordError):
            yield where, line
            continue
        if not line.strip():
            continue
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as err:
            yield where, RecordError(f"malformed JSON ({err.msg} at column {err.colno})", where)


def _read_text(path: Path) -> str:
    """A whole text file (a leading BOM dropped); a bad byte or an inner BOM raises RecordError
    naming its line (found by decoding line by line, only when the whole-file decode fails)."""
    raw = path.read_bytes()
    try:
        text = (raw[len(_BOM):] if raw.startswith(_BOM) else raw).decode("utf-8")
        if "\ufeff" not in text:
            return text
    except UnicodeDecodeError:
        pass
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        _decode(line.rstrip(b"\r"), f"{path}:{lineno}", first=lineno == 1)
    raise AssertionError("unreachable: some line failed to decode")


def _json_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        text = _read_text(path)
    except RecordError as err:
        raise ValueError(str(err)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        # a JSON Lines file with a .json name is common: fall back to it
        first = text.lstrip().split("\n", 1)[0]
        try:
            json.loads(first)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno}); expected an "
                             f"array of objects or JSON Lines") from None
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
        yield f"{path}: record {i}", row


def _csv_cell(text: str) -> Any:
    """A CSV cell: empty is absent, a JSON list or object (a conversation, token weights) is parsed,
    anything else stays text."""
    stripped = text.strip()
    if not stripped:
        return None
    if stripped[0] in "[{":
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return text
        if isinstance(value, (list, dict)):
            return value
    return text


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[str, Any]]:
    def lines():
        for lineno, line in _text_lines(path):
            if isinstance(line, RecordError):
                raise ValueError(str(line))  # a CSV record may span lines: the file cannot be read on
            yield line + "\n"

    reader = csv.reader(lines(), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise ValueError(f"{path}:1: malformed CSV header ({err})") from None
    if not header or not any(h.strip() for h in header):
        raise ValueError(f"{path}:1: no header row; the first line must name the columns (e.g. prompt,response)")
    header = [h.strip() for h in header]
    n = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            n += 1
            yield f"{path}: record {n}", RecordError(f"malformed CSV (line {reader.line_num}: {err})",
                                                     f"{path}: record {n}")
            continue
        if not any(c.strip() for c in cells):
            continue
        n += 1
        where = f"{path}: record {n}"
        if len(cells) != len(header):
            yield where, RecordError(f"{len(cells)} cells but the header names {len(header)} columns "
                                     f"(line {reader.line_num}; quote cells that hold the delimiter)", where)
            continue
        yield where, {h: v for h, v in ((h, _csv_cell(c)) for h, c in zip(header, cells)) if v is not None}


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - any unreadable parquet becomes one line
        raise ValueError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
    n = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            n += 1
            yield f"{path}: record {n}", row


def _dataset_rows(ds, name: str) -> Iterator[tuple[str, Any]]:
    for i, row in enumerate(ds, 1):
        yield f"{name}: record {i}", row


def _hub_rows(dataset_id: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    from ..model.loading import hub_reachable

    if not hub_reachable():
        raise ValueError(f"could not open the dataset '{dataset_id}': the Hugging Face hub is unreachable; pass a "
                         f"local {READABLE.rsplit(' or a hub', 1)[0]}")
    try:
        ds = datasets.load_dataset(dataset_id, split=split, streaming=True)
    except Exception as err:  # noqa: BLE001 - offline, missing or private datasets all become one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"could not open the dataset '{dataset_id}' (split {split!r}) from the Hugging Face hub "
                         f"({first}); without network access pass a local file or a save_to_disk directory") from None
    yield from _dataset_rows(ds, f"{dataset_id}[{split}]")


def _disk_rows(path: Path, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: not a datasets save_to_disk directory; pass a {READABLE}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{path}: no split {split!r}; it has {', '.join(ds)} (use --split)")
        ds = ds[split]
    return _dataset_rows(ds, str(path))


def iter_rows(source: str | os.PathLike, *, split: str = "train") -> Iterator[tuple[str, Any]]:
    """Yield ``(where, row)`` for every row of a JSONL / JSON / Parquet / CSV / TSV file, a
    ``datasets`` ``save_to_disk`` directory (``split`` picks from a ``DatasetDict``) or a hub dataset
    id. A row that cannot be read (malformed JSON line or CSV row, bytes that are not UTF-8) yields
    a :class:`RecordError` instead. The source is checked when this is called, not when iterated."""
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
        if lower.endswith((".csv", ".tsv")):
            return _csv_rows(path, "\t" if lower.endswith(".tsv") else ",")
        raise ValueError(f"{path}: unknown file type; use a {READABLE}")
    if path.is_dir():
        return _disk_rows(path, split)
    if _HUB_ID.match(name) and not name.lower().endswith((".jsonl", ".json", ".parquet", ".csv", ".tsv")):
        return _hub_rows(name, split)
    raise FileNotFoundError(f"{source}: no such file or directory (pass a {READABLE})")


def iter_records(
    source: str | os.PathLike,
    *,
    key_map: Mapping[str, str] | None = None,
    keep_extra: bool = False,
    split: str = "train",
    require_response: bool = True,
) -> Iterator[tuple[str, dict | RecordError]]:
    """Yield ``(where, record)`` with each row normalised by :func:`~deft.data.records.normalize_record`
    (every shape it knows: deft's, TRL's prompt/completion, messages, Alpaca, ShareGPT), or
    ``(where, RecordError)`` for a row that is not a valid record. ``require_response=False`` also
    accepts prompts without a response (evaluation records). ``key_map`` maps record keys to column
    names, as a mapping or as ``["prompt=question", ...]`` (``--map``)."""
    key_map = parse_key_map(key_map)  # ["prompt=question"] or {"prompt": "question"}; unknown keys refused now
    rows = iter_rows(source, split=split)  # checks the source now, before the generator runs

    def records():
        for where, row in rows:
            if isinstance(row, RecordError):
                yield where, row
                continue
            try:
                yield where, normalize_record(row, key_map, keep_extra=keep_extra, require_response=require_response)
            except RecordError as err:
                yield where, err.at(where)

    return records()


def count_rows(source: str | os.PathLike, *, split: str = "train") -> int:
    """Number of rows of a source (streams through it)."""
    return sum(1 for _ in iter_rows(source, split=split))


def check_output_path(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a file to write, checked before any work: its folder must be a folder (or
    creatable) and the path itself must not be a folder. Raises ``ValueError`` with one line."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; give a file name such as {target / 'records.jsonl'}")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
            if not os.access(parent, os.W_OK):
                raise ValueError(f"{flag} {path}: cannot write in {parent} (permission denied)")
            break
    return target


def write_jsonl(records: Iterable[Mapping], path: str | os.PathLike) -> int:
    """Write records as JSON Lines, atomically (a temporary file renamed into place, mode 0644).
    Returns the number written. Values JSON cannot hold (tuples, sets, numpy) are converted."""
    n = 0
    with atomic_open(check_output_path(path)) as f:
        for rec in records:
            f.write(json.dumps(json_safe(rec), ensure_ascii=False))
            f.write("\n")
            n += 1
    return n
