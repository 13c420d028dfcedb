"""Helpers shared by test_cli_eval.py and test_eval_runner.py."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data" / "eval"


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]
