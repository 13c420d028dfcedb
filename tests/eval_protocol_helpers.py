"""Helpers shared by test_eval_medical.py, test_eval_prompts.py, test_eval_report.py and
test_eval_runner.py."""

from __future__ import annotations

from pathlib import Path

from deft.eval.generate import Generation

DATA = Path(__file__).parent / "data" / "eval"


def text_of(prompt):
    return str(prompt) if isinstance(prompt, str) else prompt[-1]["content"]


class Scripted:
    """A fake backend: ``answer(problem_text, sample_index) -> text``; records every call."""

    name = "scripted"

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def __call__(self, prompts, *, k, **options):
        self.calls.append({"prompts": list(prompts), "k": k, **options})
        return [[Generation(self.answer(text_of(p), j), 3, True) for j in range(k)] for p in prompts]
