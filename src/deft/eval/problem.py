"""One evaluation problem (:class:`Problem`) and a prompt written out as text (:class:`RawPrompt`):
what the benchmark readers (:mod:`.benchmarks`, :mod:`.medical`) build and the generators render.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .scorers import score

__all__ = ["MATH_PROMPT_SUFFIX", "Problem", "RawPrompt"]

# what the math evaluation harness appends to a problem (the medical m1 prompts get it too)
MATH_PROMPT_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Problem:
    """One evaluation problem.

    ``prompt`` is the user message text; ``messages`` the full chat when the source gave one
    (otherwise :meth:`chat` builds a single user turn). ``reference`` is the gold answer as the
    scorers expect it; ``scorers`` the scorer names, the first being the primary one; ``entry`` the
    reasoning-gym item, passed to ``rg:<task>`` scorers; ``context`` what else the scorers may use
    (``options`` of a multiple-choice item, the ``data_name`` of a math benchmark). ``raw_prompt``
    is a literal prompt text (special tokens included) used instead of a chat template
    (``--protocol paper``).
    """

    benchmark: str
    id: str
    prompt: str
    reference: str
    scorers: tuple[str, ...] = ("math",)
    messages: tuple[dict, ...] | None = None
    entry: dict | None = field(default=None, compare=False, repr=False)
    context: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    raw_prompt: str | None = None

    @property
    def scorer(self) -> str:
        """The primary scorer name."""
        return self.scorers[0]

    def chat(self) -> list[dict]:
        """The conversation to generate from: ``messages``, or one user turn with ``prompt``."""
        if self.messages:
            return [dict(m) for m in self.messages]
        return [{"role": "user", "content": self.prompt}]

    def generation_input(self):
        """What the generator renders: the literal ``raw_prompt`` (a :class:`RawPrompt`) or :meth:`chat`."""
        return RawPrompt(self.raw_prompt) if self.raw_prompt is not None else self.chat()

    def score(self, prediction: str | None) -> dict[str, float]:
        """``{scorer: score(scorer, prediction, reference, **context)}`` for each of this problem's scorers."""
        context = dict(self.context or {})
        if self.entry is not None:
            context["entry"] = self.entry
        return {name: score(name, prediction, self.reference, **context) for name in self.scorers}


class RawPrompt(str):
    """A prompt already written out as text (special tokens included), tokenised as is with the
    tokenizer's own special-token handling, not through a chat template."""
