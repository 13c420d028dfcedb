"""Helpers shared by test_data_sources.py, test_data_sources_math.py, test_data_sources_medical.py and
test_data_sources_rg.py."""

from __future__ import annotations

import json

from deft.data import RecordError


def _records(items):
    out = []
    for where, rec in items:
        assert not isinstance(rec, RecordError), rec
        out.append(rec)
    return out


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)
