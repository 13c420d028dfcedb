"""Prompt templates for tokenizers without a chat template.

``"chat"`` means the tokenizer's own chat template (``tokenizer.apply_chat_template``); ``"auto"``
picks ``"chat"`` when the tokenizer has one and ``"plain"`` otherwise. The named plain templates
render a record as text:

* ``plain`` — ``"{system}\\n\\n{prompt}\\n"`` then the response, then the tokenizer's EOS token;
* ``qa`` — ``"{system}\\n\\nQuestion: {prompt}\\nAnswer: "`` then the response and EOS.

A conversation with several turns is rendered with its earlier turns joined by a blank line
(the response is always the last assistant turn; plain templates do not train on earlier turns).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PlainTemplate", "TEMPLATES", "template_names", "resolve_template"]


@dataclass(frozen=True)
class PlainTemplate:
    """A text template: ``system_fmt`` (used when there is a system prompt), ``prompt_fmt`` around
    the prompt text; the response follows, then EOS."""

    name: str
    system_fmt: str = "{system}\n\n"
    prompt_fmt: str = "{prompt}\n"
    turn_sep: str = "\n\n"

    def render_prompt(self, messages: list[dict]) -> str:
        """Text before the response, from the messages without the final assistant turn."""
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m["content"] for m in messages if m["role"] != "system"]
        text = self.system_fmt.format(system=system) if system else ""
        return text + self.prompt_fmt.format(prompt=self.turn_sep.join(turns))


TEMPLATES = {
    "plain": PlainTemplate("plain"),
    "qa": PlainTemplate("qa", prompt_fmt="Question: {prompt}\nAnswer: "),
}


def template_names() -> list[str]:
    """Every accepted template name."""
    return ["auto", "chat", *TEMPLATES]


def resolve_template(name: str, tokenizer) -> str:
    """The concrete template name for a tokenizer: ``auto`` -> ``chat`` or ``plain``. Raises
    ``ValueError`` for an unknown name or ``chat`` on a tokenizer that has no chat template."""
    if name not in template_names():
        raise ValueError(f"unknown template {name!r}; use one of {', '.join(template_names())}")
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if name == "auto":
        return "chat" if has_chat else "plain"
    if name == "chat" and not has_chat:
        raise ValueError("the tokenizer has no chat template; use --template plain (or qa)")
    return name
