"""Tests of deft.eval.prompts: the paper's literal evaluation prompts (``--protocol paper``): facts of
the protocol."""

import json

import pytest

from deft.eval import RawPrompt
from deft.eval.generate import render_prompts
from deft.eval.prompts import math_prompt_type, model_family, render_paper_prompt

from eval_protocol_helpers import DATA


def test_paper_prompts_equal_the_reference_strings():
    ref = json.loads((DATA / "paper_prompts.json").read_text())
    q = "What is {x} + 1?"
    family = {"qwen-boxed": "qwen", "llama-base-boxed-with-bos": "llama", "deepseek-math": "deepseek"}
    for prompt_type, text in ref["math"].items():
        assert render_paper_prompt("math", q, family[prompt_type]) == text
    for regime in ("figfont", "medical"):
        for fam, text in ref[regime].items():
            assert render_paper_prompt(regime, q, fam) == text
    assert math_prompt_type("qwen-2.5-math-1.5b") == "qwen-boxed"
    assert math_prompt_type("meta-llama/Llama-3.1-8B") == "llama-base-boxed-with-bos"
    assert math_prompt_type("deepseek-math-7b") == "deepseek-math"
    with pytest.raises(ValueError, match="--prompt-family"):
        model_family("runs/deft/final")
    with pytest.raises(ValueError, match="no figfont prompt for deepseek"):
        render_paper_prompt("figfont", q, "deepseek")


def test_raw_prompts_are_tokenised_as_text(smollm2_tokenizer):
    text = render_paper_prompt("figfont", "HI", "qwen")
    ids = render_prompts(smollm2_tokenizer, [RawPrompt(text)])[0]
    assert ids == smollm2_tokenizer(text, add_special_tokens=True)["input_ids"]
    assert smollm2_tokenizer.convert_tokens_to_ids("<|im_start|>") == ids[0]  # a special token, not text
