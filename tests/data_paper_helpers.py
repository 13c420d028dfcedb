"""Helpers shared by test_data_paper.py and test_data_templates.py."""

from __future__ import annotations

BOXED = "Please reason step by step, and put your final answer within \\boxed{}."


REF_QWEN_MEDICAL = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{prompt}\n" + BOXED
                    + "<|im_end|>\n<|im_start|>assistant\n")


REF_DEEPSEEK_MATH = "<｜begin▁of▁sentence｜>User: {prompt}\n" + BOXED + "\n\nAssistant:"


REF_LLAMA_BASE_BOXED_WITH_BOS = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{input}\n" + BOXED + "<|eot_id|>\n"
    "<|start_header_id|>assistant<|end_header_id|>\n\n")
