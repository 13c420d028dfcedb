"""Helpers shared by test_data_dataset.py and test_data_tokenize.py."""

from __future__ import annotations

RESPONSE = "The capital of France is Paris."


REC = {"system": "Answer briefly.", "prompt": "What is the capital of France?", "response": RESPONSE}
