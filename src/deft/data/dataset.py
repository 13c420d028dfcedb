"""A whole file of records, validated and tokenised into a memory-mapped HF ``datasets.Dataset``.

The records stream through validation and tokenisation into an Arrow file written batch by batch,
so a large file never becomes one Python list; the returned dataset is memory-mapped from it.
Columns: ``input_ids`` and ``labels`` (int32 lists; labels -100 outside the response),
``weights`` (float32 list or null) and ``where`` (``FILE:LINE`` of the record).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

from .readers import iter_records
from .records import RecordError
from .tokenize import RecordTokenizer
from .validate import DataError, ValidationReport, check_records

__all__ = ["tokenize_to_dataset"]

_BATCH = 1024


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("weights", pa.list_(pa.float32())),
        ("where", pa.string()),
    ])


def tokenize_to_dataset(
    source: str,
    tokenizer,
    *,
    key_map: Mapping[str, str] | None = None,
    split: str = "train",
    template: str = "auto",
    max_length: int | None = None,
    truncation: str = "left",
    all_turns: bool = False,
    skip_invalid: bool = False,
    max_problems: int = 20,
    cache_dir: str | os.PathLike | None = None,
):
    """Validate and tokenise every record of ``source`` (file, ``save_to_disk`` directory or hub
    id) and return ``(dataset, report)``: a memory-mapped ``datasets.Dataset`` (columns above) and
    the :class:`~deft.data.validate.ValidationReport`. Raises
    :class:`~deft.data.validate.DataError` listing the problems if any record is invalid (unless
    ``skip_invalid``), and ``ValueError`` if no record is left.

    The Arrow file goes to ``cache_dir`` (kept) or to a temporary directory removed at exit."""
    import datasets
    import pyarrow as pa

    view = RecordTokenizer(tokenizer, template=template, max_length=max_length, truncation=truncation,
                           all_turns=all_turns)
    report = ValidationReport(max_problems=max_problems)
    if cache_dir is None:
        directory = Path(tempfile.mkdtemp(prefix="deft-tokenized-"))
        atexit.register(shutil.rmtree, directory, True)
    else:
        directory = Path(cache_dir)
        directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenized.arrow"
    schema = _schema()
    columns = {name: [] for name in schema.names}

    def flush(writer):
        if columns["where"]:
            writer.write_batch(pa.record_batch([pa.array(columns[n], type=schema.field(n).type) for n in schema.names],
                                               schema=schema))
            for values in columns.values():
                values.clear()

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for where, rec in check_records(iter_records(source, key_map=key_map, split=split), report):
            # tokenised here rather than in check_records so the example is kept, not tokenised twice
            try:
                ex = view(rec, where)
            except RecordError as err:
                report.valid -= 1
                report.add_problem(err)
                continue
            if ex is None:
                report.valid -= 1
                report.dropped += 1
                continue
            report.truncated += int(ex.truncated)
            columns["input_ids"].append(ex.input_ids)
            columns["labels"].append(ex.labels)
            columns["weights"].append(ex.weights)
            columns["where"].append(where)
            if len(columns["where"]) >= _BATCH:
                flush(writer)
        flush(writer)
    if report.invalid and not skip_invalid:
        raise DataError(report, str(source))
    if report.valid == 0:
        raise ValueError(f"{source}: no usable record ({report.summary()})")
    return datasets.Dataset.from_file(str(path)), report
