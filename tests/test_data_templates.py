"""Tests of deft.data.templates: prompt templates for tokenizers without a chat template, and the
paper's literal strings."""

import pytest

from deft.data import RecordTokenizer

from data_paper_helpers import BOXED, REF_DEEPSEEK_MATH, REF_LLAMA_BASE_BOXED_WITH_BOS, REF_QWEN_MEDICAL
from data_readers_helpers import tiny_tokenizer


def test_math_harness_prompts_for_evaluation():
    from deft.data import harness_prompt

    q = "What is 1+1?"
    assert harness_prompt("qwen", q) == REF_QWEN_MEDICAL.replace("{prompt}", q)  # qwen-boxed: the medical Qwen string
    assert harness_prompt("llama-base-boxed-with-bos", q) == REF_LLAMA_BASE_BOXED_WITH_BOS.replace("{input}", q)
    assert harness_prompt("deepseek", q) == REF_DEEPSEEK_MATH.replace("{prompt}", q)
    # Llama and DeepSeek evaluate math with their training strings; Qwen trains with the chat-template form
    tok = tiny_tokenizer()
    for family in ("llama", "deepseek"):
        rec = {"prompt": f"{q}\n{BOXED}", "response": "2", "task": "math"}
        if family == "llama":
            rec["system"] = "You are a helpful assistant."
        ids = RecordTokenizer(tok, template=f"paper:{family}")(rec).prompt_ids
        assert ids == tok(harness_prompt(family, q), add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="unknown prompt type 'mistral'"):
        harness_prompt("mistral", q)
