"""Helpers shared by test_cli_train.py, test_train_run.py and test_train_trainer.py."""

from __future__ import annotations

import csv


def _quiet(*_):
    pass


def _csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    return path
