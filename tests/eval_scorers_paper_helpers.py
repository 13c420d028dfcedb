"""Helpers shared by test_eval_scorers_paper.py and test_eval_scorers_paper_math.py."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data" / "eval"


def cases(name):
    return [json.loads(line) for line in (DATA / f"paper_{name}_cases.jsonl").read_text().splitlines()]
