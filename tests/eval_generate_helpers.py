"""Helpers shared by test_eval_generate.py and test_eval_generate_vllm.py."""

from __future__ import annotations

PROMPTS = [
    "hi",
    "What is the capital of France? Answer in one word please.",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
    "x " * 30,
]
