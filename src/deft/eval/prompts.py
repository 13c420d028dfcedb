"""The paper's literal evaluation prompts (``--protocol paper``): facts of the protocol.

The reference code (``luludus/DEFT``) does not use a tokenizer's chat template at evaluation: it
writes each prompt as one literal string, special tokens included, and hands the text to vLLM,
which tokenises it adding the tokenizer's BOS (so the Llama strings, which already start with
``<|begin_of_text|>``, end up with a doubled BOS, as in training). The strings here are those
prompts; :func:`render_paper_prompt` fills one in.

* Math: the Qwen2.5-Math harness's prompt types the reference uses — ``qwen-boxed`` (Qwen models),
  ``llama-base-boxed-with-bos`` (Llama), ``deepseek-math`` (DeepSeek) — picked from the model key
  or name (:func:`math_prompt_type`).
* FigFont and medical: the evaluation scripts' Qwen and Llama strings (other families are not
  supported by the reference; pass ``prompt_family`` to use one of these for another model).
"""

from __future__ import annotations

from ..data.paper import PAPER_MODELS
from ..data.templates import HARNESS_PROMPTS

__all__ = [
    "FIGFONT_PAPER_PROMPTS", "MATH_PROMPT_TYPES", "MEDICAL_PAPER_PROMPTS", "MODEL_KEYS", "PROMPT_FAMILIES",
    "math_prompt_type", "model_family", "render_paper_prompt",
]

_BOXED = "Please reason step by step, and put your final answer within \\boxed{}."

# the harness's prompt types: "{input}" is the question (one definition, shared with the data layer)
MATH_PROMPT_TYPES: dict[str, str] = HARNESS_PROMPTS

_FIGFONT_SYSTEM = ("You are an expert at decoding Figlet Font ASCII art. When given Figlet Font text, identify "
                   "the word it represents and output only that without any explanations or additional text.")

FIGFONT_PAPER_PROMPTS: dict[str, str] = {
    "qwen": ("<|im_start|>system\n" + _FIGFONT_SYSTEM + "<|im_end|>\n<|im_start|>user\n{input}\n<|im_end|>\n"
             "<|im_start|>assistant\n"),
    "llama": ("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + _FIGFONT_SYSTEM
              + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}

MEDICAL_PAPER_PROMPTS: dict[str, str] = {
    "qwen": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{input}\n" + _BOXED
             + "<|im_end|>\n<|im_start|>assistant\n"),
    "llama": ("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
              "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\n{input}\n" + _BOXED + "<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}

PROMPT_FAMILIES = ("qwen", "llama", "deepseek")
_MATH_TYPE_OF_FAMILY = {"qwen": "qwen-boxed", "llama": "llama-base-boxed-with-bos", "deepseek": "deepseek-math"}

# the reference's model keys and the hub models they stand for
MODEL_KEYS: dict[str, str] = PAPER_MODELS


def model_family(model: str | None, family: str | None = None) -> str:
    """``qwen``, ``llama`` or ``deepseek``: ``family`` when given, else read from the model key or
    name as the reference does (``"llama"`` in the lower-cased name first, then ``"qwen"``, then
    ``"deepseek"``). Raises ``ValueError`` when neither tells."""
    if family:
        if family not in PROMPT_FAMILIES:
            raise ValueError(f"unknown prompt family {family!r}; use one of {', '.join(PROMPT_FAMILIES)}")
        return family
    name = str(model or "").lower()
    name = MODEL_KEYS.get(name, name).lower()
    for fam in ("llama", "qwen", "deepseek"):
        if fam in name:
            return fam
    raise ValueError(f"--protocol paper writes the reference's literal prompts, which exist for Qwen, Llama and "
                     f"DeepSeek models; the family of {model!r} is not in its name: pass --prompt-family "
                     f"{'|'.join(PROMPT_FAMILIES)}")


def math_prompt_type(model: str | None, family: str | None = None) -> str:
    """The harness prompt type for a model: ``qwen-boxed``, ``llama-base-boxed-with-bos`` or
    ``deepseek-math`` (:func:`model_family`)."""
    return _MATH_TYPE_OF_FAMILY[model_family(model, family)]


def render_paper_prompt(regime: str, question: str, family: str) -> str:
    """The literal prompt text of ``regime`` (``math``, ``figfont``, ``medical``) for a model
    ``family`` around ``question``. Raises ``ValueError`` where the reference has no prompt."""
    if regime == "math":
        return MATH_PROMPT_TYPES[_MATH_TYPE_OF_FAMILY[family]].replace("{input}", question)
    table = {"figfont": FIGFONT_PAPER_PROMPTS, "medical": MEDICAL_PAPER_PROMPTS}.get(regime)
    if table is None:
        raise ValueError(f"no paper prompt for {regime!r}; use math, figfont or medical")
    if family not in table:
        raise ValueError(f"the reference has no {regime} prompt for {family} models; pass --prompt-family qwen "
                         "or llama")
    return table[family].replace("{input}", question)
