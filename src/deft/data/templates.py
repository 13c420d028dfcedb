"""Prompt templates for tokenizers without a chat template, and the paper's literal strings.

``"chat"`` means the tokenizer's own chat template (``tokenizer.apply_chat_template``); ``"auto"``
picks ``"chat"`` when the tokenizer has one and ``"plain"`` otherwise. The named plain templates
render a record as text:

* ``plain`` — ``"{system}\\n\\n{prompt}\\n"`` then the response, then the tokenizer's EOS token;
* ``qa`` — ``"{system}\\n\\nQuestion: {prompt}\\nAnswer: "`` then the response and EOS;
* ``paper`` (or ``paper:qwen``, ``paper:llama``, ``paper:deepseek``) — the reference's literal
  prompt strings (special tokens written as text, so no BOS is added), then the response and EOS,
  as the reference's SFT dataset builds them; ``paper`` picks the family from the tokenizer's name
  (:func:`deft.data.paper.paper_family`). The string depends on the regime (``figfont``, ``math``,
  ``medical``: the record's ``task``), and when no regime is given, on the system prompt (each
  regime's is distinct for a family); see :data:`PAPER_STRINGS`.

A conversation with several turns is rendered with its earlier turns joined by a blank line
(the response is always the last assistant turn; plain templates do not train on earlier turns).
The paper template renders one user turn.

For math *evaluation* the reference uses its harness's prompt types instead (:data:`HARNESS_PROMPTS`,
:func:`harness_prompt`: ``qwen-boxed``, ``llama-base-boxed-with-bos``, ``deepseek-math``); for Llama
and DeepSeek they equal the training strings, for Qwen they differ (training: the Qwen2.5-Math chat
template, whose system prompt is the boxed instruction).

``paper-sft`` (and ``paper-sft:<family>``) is the same but for one quirk of the reference's
training: its SFT dataset wraps every prompt of a Llama *base* model in the harness string
``llama-base-boxed-with-bos`` (:data:`LLAMA_SFT_WRAP`), so a Llama FigFont or medical prompt (already
a whole Llama prompt with its doubled BOS) is trained inside a second one, and evaluated without it.
``paper`` renders the same string in training and evaluation (deft's rule); ``paper-sft`` for
training reproduces the reference exactly. For Qwen and DeepSeek the two are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

from .paper import FIGFONT_PAPER_SYSTEM, HELPFUL_SYSTEM, PAPER_FAMILIES, PAPER_REGIMES, paper_family
from .records import RecordError

__all__ = ["PlainTemplate", "PaperTemplate", "PAPER_STRINGS", "LLAMA_SFT_WRAP", "HARNESS_PROMPTS",
           "HARNESS_PROMPT_TYPES", "harness_prompt", "TEMPLATES", "template_names", "resolve_template"]

_QWEN = "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
_LLAMA = ("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")

#: (family, regime) -> the reference's string with ``{system}`` and ``{prompt}`` slots. FigFont and
#: medical: ``data_process_figfont.py`` / ``data_process_medical.py`` (Llama with its doubled BOS;
#: Qwen FigFont with a newline before ``<|im_end|>``); math: the Qwen2.5-Math chat template and the
#: harness prompt types ``llama-base-boxed-with-bos`` and ``deepseek-math``.
PAPER_STRINGS = {
    ("qwen", "figfont"): ("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}\n<|im_end|>\n"
                          "<|im_start|>assistant\n"),
    ("qwen", "medical"): _QWEN,
    ("qwen", "math"): _QWEN,
    ("llama", "figfont"): _LLAMA,
    ("llama", "medical"): _LLAMA,
    ("llama", "math"): ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>\n"
                        "<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>\n"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ("deepseek", "medical"): "<｜begin▁of▁sentence｜>User: {prompt}\n\nAssistant:\n",
    ("deepseek", "math"): "<｜begin▁of▁sentence｜>User: {prompt}\n\nAssistant:",
}


#: the math evaluation harness's prompt types the reference uses (evaluations/math/utils.py), per family
#: (scripts/one_click/TEMPLATE.py); ``{input}`` is the question
HARNESS_PROMPTS = {
    "qwen-boxed": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{input}\n"
                   "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
                   "<|im_start|>assistant\n"),
    "llama-base-boxed-with-bos": ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
                                  "assistant.<|eot_id|>\n<|start_header_id|>user<|end_header_id|>\n\n{input}\nPlease "
                                  "reason step by step, and put your final answer within \\boxed{}.<|eot_id|>\n"
                                  "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "deepseek-math": ("<｜begin▁of▁sentence｜>User: {input}\nPlease reason step by step, and put your final answer "
                      "within \\boxed{}.\n\nAssistant:"),
}
HARNESS_PROMPT_TYPES = {"qwen": "qwen-boxed", "llama": "llama-base-boxed-with-bos", "deepseek": "deepseek-math"}


def harness_prompt(family_or_type: str, question: str) -> str:
    """The math evaluation prompt of the reference for a family (``qwen``, ``llama``, ``deepseek``) or
    a harness prompt type (:data:`HARNESS_PROMPTS`), around ``question``."""
    kind = HARNESS_PROMPT_TYPES.get(family_or_type, family_or_type)
    if kind not in HARNESS_PROMPTS:
        raise ValueError(f"unknown prompt type {family_or_type!r}; "
                         f"use one of {', '.join([*HARNESS_PROMPT_TYPES, *HARNESS_PROMPTS])}")
    return HARNESS_PROMPTS[kind].replace("{input}", question)


#: the reference SFT dataset's wrapper for Llama base models (main_verl/utils/dataset/sft_dataset.py)
LLAMA_SFT_WRAP = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "You are a helpful assistant.<|eot_id|>\n"
                  "<|start_header_id|>user<|end_header_id|>\n\n{input}\nPlease reason step by step, and put your final "
                  "answer within \\boxed{}.<|eot_id|>\n<|start_header_id|>assistant<|end_header_id|>\n\n")


@dataclass(frozen=True)
class PlainTemplate:
    """A text template: ``system_fmt`` (used when there is a system prompt), ``prompt_fmt`` around
    the prompt text; the response follows, then EOS. ``adds_bos``: the tokenizer's BOS goes first."""

    name: str
    system_fmt: str = "{system}\n\n"
    prompt_fmt: str = "{prompt}\n"
    turn_sep: str = "\n\n"
    adds_bos: bool = True

    def render_prompt(self, messages: list[dict], regime: str | None = None) -> str:
        """Text before the response, from the messages without the final assistant turn
        (``regime`` is unused: one string for every record)."""
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m["content"] for m in messages if m["role"] != "system"]
        text = self.system_fmt.format(system=system) if system else ""
        return text + self.prompt_fmt.format(prompt=self.turn_sep.join(turns))


@dataclass(frozen=True)
class PaperTemplate:
    """The reference's literal prompt strings of one model family (:data:`PAPER_STRINGS`)."""

    name: str
    family: str
    sft_wrap: bool = False  # paper-sft: the reference's training-time Llama wrapper
    adds_bos: bool = False  # the strings write their own BOS

    def regime_of(self, messages: list[dict], regime: str | None) -> str:
        """The regime whose string renders ``messages``: ``regime`` when it is one, else read from
        the system prompt (FigFont's; for Llama, math's "helpful assistant" or else medical's date
        header), else math."""
        if regime in PAPER_REGIMES:
            return regime
        system = next((m["content"] for m in messages if m["role"] == "system"), None)
        if system == FIGFONT_PAPER_SYSTEM:
            return "figfont"
        if self.family == "llama":
            return "math" if system == HELPFUL_SYSTEM else "medical"
        return "math"  # Qwen: math and medical share the string; DeepSeek: the paper's runs are math

    def render_prompt(self, messages: list[dict], regime: str | None = None) -> str:
        """The literal prompt string for a system turn (optional) and one user turn."""
        system = [m["content"] for m in messages if m["role"] == "system"]
        turns = [m for m in messages if m["role"] != "system"]
        if len(turns) != 1 or turns[0]["role"] != "user" or len(system) > 1:
            raise RecordError("the paper template renders one user turn (and an optional system prompt); "
                              "this conversation has more")
        regime = self.regime_of(messages, regime)
        fmt = PAPER_STRINGS.get((self.family, regime))
        if fmt is None:
            raise RecordError(f"the reference has no {regime} prompt for {self.family} models")
        if "{system}" not in fmt and system:
            raise RecordError(f"the paper's {self.family} {regime} prompt has no system turn; "
                              "remove 'system' from the record")
        if "{system}" in fmt and not system:
            raise RecordError(f"the paper's {self.family} {regime} prompt needs the record's 'system' prompt "
                              f"(write records with deft data ... --protocol paper)")
        text = fmt.format(system=system[0] if system else "", prompt=turns[0]["content"])  # values are not re-parsed
        if self.sft_wrap and self.family == "llama" and regime != "math":  # math's string is the wrapper itself
            text = LLAMA_SFT_WRAP.replace("{input}", text)
        return text


TEMPLATES = {
    "plain": PlainTemplate("plain"),
    "qa": PlainTemplate("qa", prompt_fmt="Question: {prompt}\nAnswer: "),
    **{f"paper:{f}": PaperTemplate(f"paper:{f}", f) for f in PAPER_FAMILIES},
    **{f"paper-sft:{f}": PaperTemplate(f"paper-sft:{f}", f, sft_wrap=True) for f in PAPER_FAMILIES},
}


def template_names() -> list[str]:
    """Every accepted template name."""
    return ["auto", "chat", *TEMPLATES, "paper", "paper-sft"]


def resolve_template(name: str, tokenizer) -> str:
    """The concrete template name for a tokenizer: ``auto`` -> ``chat`` or ``plain``, ``paper`` ->
    ``paper:<family>`` from the tokenizer's name. Raises ``ValueError`` for an unknown name, ``chat``
    on a tokenizer that has no chat template, or ``paper`` when the name tells no family."""
    if name not in template_names():
        raise ValueError(f"unknown template {name!r}; use one of {', '.join(template_names())}")
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if name == "auto":
        return "chat" if has_chat else "plain"
    if name == "chat" and not has_chat:
        raise ValueError("the tokenizer has no chat template; use --template plain (or qa)")
    if name in ("paper", "paper-sft"):
        source = getattr(tokenizer, "name_or_path", "") or ""
        family = paper_family(source)
        if family is None:
            raise ValueError(f"--template {name}: cannot tell the model family from {source!r}; "
                             f"use --template {name}:qwen, {name}:llama or {name}:deepseek")
        return f"{name}:{family}"
    return name
