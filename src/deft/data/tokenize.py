"""The tokenised view the trainer consumes: ``input_ids``, ``labels`` and optional per-position
``weights``, with response-only labels.

``labels`` are aligned with ``input_ids`` (as in Hugging Face models; the trainer shifts them):
``labels[i] == input_ids[i]`` on response tokens and :data:`IGNORE_INDEX` (-100) elsewhere.

**Chat templates.** The prompt is the conversation up to the response rendered with
``add_generation_prompt=True``; the full text is the whole conversation. Both are tokenised
(``add_special_tokens=False``: the template writes its own special tokens) and the prompt ids must
be a prefix of the full ids, else the record is rejected with its location. The response tokens
are the full ids after the prompt, up to and including the last special token there: the
end-of-turn token (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``, ...) and an EOS the template
appends after it are trained on; text the template writes after them (a newline) is not. With
``all_turns=True`` every assistant turn is trained on, each split the same way (the conversation
up to that turn must render as a prefix of the whole conversation).

**Plain templates** (:mod:`deft.data.templates`): the prompt text and the response are tokenised
separately (the prompt gets the BOS token when the tokenizer adds one), and EOS is appended to the
response; so the prompt ids are exactly what the model sees at inference.

**Truncation** to ``max_length`` tokens, by ``truncation`` policy:

* ``"left"`` (default) — drop prompt tokens from the left (the first token, usually BOS or the
  template's start token, is kept, and at least one token stays before the response); if the
  response alone is still too long, cut it on the right;
* ``"right"`` — cut the sequence on the right; a record left with no response token is an error
  (``all prompt after truncation``);
* ``"drop"`` — drop records longer than ``max_length`` (counted, not an error).

**Weights.** ``weight`` (per example) and ``token_weights`` (per response token) become one float
per position, 0 outside the response. ``token_weights`` has one entry per labelled token, or one
per labelled token before the closing special tokens (which then get weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Sequence

import torch

from .records import RecordError, record_messages
from .templates import TEMPLATES, resolve_template

__all__ = [
    "IGNORE_INDEX",
    "TRUNCATION_POLICIES",
    "TokenizedExample",
    "TokenizeStats",
    "RecordTokenizer",
    "tokenize_record",
    "collate",
    "special_token_ids",
]

IGNORE_INDEX = -100
TRUNCATION_POLICIES = ("left", "right", "drop")


@dataclass
class TokenizedExample:
    """One tokenised record. ``weights`` is None when the record has no weights."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float] | None = None
    truncated: bool = False
    where: str = ""

    @property
    def label_mask(self) -> list[bool]:
        """True where the position is trained on."""
        return [lab != IGNORE_INDEX for lab in self.labels]

    @property
    def num_prompt_tokens(self) -> int:
        """Tokens before the first labelled one."""
        return next((i for i, lab in enumerate(self.labels) if lab != IGNORE_INDEX), len(self.labels))

    @property
    def prompt_ids(self) -> list[int]:
        """The ids before the first labelled token."""
        return self.input_ids[: self.num_prompt_tokens]

    @property
    def response_ids(self) -> list[int]:
        """The ids from the first labelled token on."""
        return self.input_ids[self.num_prompt_tokens :]

    @property
    def num_loss_tokens(self) -> int:
        """Number of labelled positions."""
        return sum(lab != IGNORE_INDEX for lab in self.labels)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class TokenizeStats:
    """Counts over the records a :class:`RecordTokenizer` has seen."""

    records: int = 0
    truncated: int = 0
    dropped: int = 0
    dropped_where: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many were tokenised, truncated and dropped."""
        return f"{self.records} records tokenised, {self.truncated} truncated, {self.dropped} dropped as too long"


def special_token_ids(tokenizer) -> set[int]:
    """The ids of a tokenizer's special tokens: ``all_special_ids`` plus the added tokens marked
    special (end-of-turn markers such as ``<|im_end|>`` are often only there)."""
    ids = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []) if i is not None}
    for tid, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(tok, "special", False):
            ids.add(int(tid))
    return ids


class RecordTokenizer:
    """Turns records into :class:`TokenizedExample` for one tokenizer and one set of options
    (see the module docstring). Call it on a record; ``stats`` counts what happened."""

    def __init__(
        self,
        tokenizer,
        *,
        template: str = "auto",
        max_length: int | None = None,
        truncation: str = "left",
        all_turns: bool = False,
    ):
        self.tokenizer = tokenizer
        self.template = resolve_template(template, tokenizer)
        if truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"unknown truncation policy {truncation!r}; use one of {', '.join(TRUNCATION_POLICIES)}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be at least 2 (got {max_length})")
        if all_turns and self.template != "chat":
            raise ValueError("training on all assistant turns needs a chat template "
                             "(plain templates train on the last turn)")
        self.max_length = max_length
        self.truncation = truncation
        self.all_turns = all_turns
        self.special_ids = special_token_ids(tokenizer)
        self.stats = TokenizeStats()
        if self.template != "chat":
            if tokenizer.eos_token_id is None:
                raise ValueError("the tokenizer has no EOS token, which plain templates append to the response")
            self._prefix = self._bos_prefix(tokenizer) if TEMPLATES[self.template].adds_bos else []

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _bos_prefix(tokenizer) -> list[int]:
        """The ids the tokenizer puts before a text (its BOS), found by tokenising "a" both ways."""
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        k = len(with_special) - len(plain)
        return list(with_special[:k]) if k > 0 and with_special[k:k + len(plain)] == plain else []

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        except Exception as err:  # noqa: BLE001 - template errors (e.g. roles must alternate) name the record
            raise RecordError(f"the chat template rejected this conversation ({str(err).splitlines()[0]})") from None

    def _trim(self, ids: Sequence[int], start: int, end: int) -> tuple[int, int]:
        """End of the labelled span (through the last special token in [start, end)) and how many
        special tokens close it."""
        last = next((j for j in range(end - 1, start - 1, -1) if ids[j] in self.special_ids), None)
        if last is None:
            return end, 0
        closing = 0
        j = last
        while j >= start and ids[j] in self.special_ids:
            closing += 1
            j -= 1
        return last + 1, closing

    def _chat(self, messages: list[dict]) -> tuple[list[int], list[tuple[int, int, int]]]:
        full_ids = self._ids(self._render(messages, False))
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not self.all_turns:
            turns = turns[-1:]
        spans = []
        for i in turns:
            prompt_ids = self._ids(self._render(messages[:i], True))
            if full_ids[: len(prompt_ids)] != prompt_ids:
                raise RecordError(
                    "the chat-templated prompt is not a prefix of the templated conversation "
                    f"(assistant turn {i}); the template changes earlier text when the response is added"
                )
            end = len(full_ids)
            if i != len(messages) - 1:
                upto = self._ids(self._render(messages[: i + 1], False))
                if full_ids[: len(upto)] != upto:
                    raise RecordError(
                        f"assistant turn {i} renders differently inside the whole conversation; "
                        "train on the last turn only"
                    )
                end = len(upto)
            stop, closing = self._trim(full_ids, len(prompt_ids), end)
            if stop <= len(prompt_ids):
                raise RecordError(f"assistant turn {i} has no tokens after the chat template")
            spans.append((len(prompt_ids), stop, closing))
        return full_ids, spans

    def prompt_ids(self, messages: list[dict], task: str | None = None) -> list[int]:
        """Token ids of a prompt (a conversation the model should answer next), exactly as this
        view renders the part before a response in training; what generation must feed. ``task``
        (a record's ``task``) picks the regime's string of the ``paper`` template."""
        if self.template == "chat":
            return self._ids(self._render(messages, True))
        return self._prefix + self._ids(TEMPLATES[self.template].render_prompt(messages, task))

    def _plain(self, messages: list[dict], task: str | None = None) -> tuple[list[int], list[tuple[int, int, int]]]:
        tpl = TEMPLATES[self.template]
        prompt_ids = self._prefix + self._ids(tpl.render_prompt(messages[:-1], task))
        response_ids = self._ids(messages[-1]["content"]) + [self.tokenizer.eos_token_id]
        return prompt_ids + response_ids, [(len(prompt_ids), len(prompt_ids) + len(response_ids), 1)]

    def _weights(self, record: Mapping, n: int, spans) -> list[float] | None:
        weight = record.get("weight")
        token_weights = record.get("token_weights")
        if weight is None and token_weights is None:
            return None
        out = [0.0] * n
        labelled = [p for s, e, _ in spans for p in range(s, e)]
        if token_weights is None:
            per_token = [1.0] * len(labelled)
        else:
            closing = sum(c for _, _, c in spans)
            if len(token_weights) == len(labelled):
                per_token = list(token_weights)
            elif len(token_weights) == len(labelled) - closing and len(spans) == 1:
                per_token = list(token_weights) + [1.0] * closing
            else:
                raise RecordError(
                    f"token_weights has {len(token_weights)} entries "
                    f"but the response has {len(labelled) - closing} tokens "
                    f"({len(labelled)} with the end-of-turn tokens) with this tokenizer"
                )
        scale = 1.0 if weight is None else float(weight)
        for p, w in zip(labelled, per_token):
            out[p] = scale * w
        return out

    def _truncate(self, ids, labels, weights):
        m = self.max_length
        if m is None or len(ids) <= m:
            return ids, labels, weights, False
        if self.truncation == "drop":
            return None
        first = next(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)
        if self.truncation == "left":
            cut = min(len(ids) - m, max(0, first - 1))
            if cut:
                keep = lambda xs: None if xs is None else xs[:1] + xs[1 + cut :]  # noqa: E731
                ids, labels, weights = keep(ids), keep(labels), keep(weights)
        ids, labels = ids[:m], labels[:m]
        weights = None if weights is None else weights[:m]
        if all(lab == IGNORE_INDEX for lab in labels):
            raise RecordError(
                f"all prompt after truncation: the prompt has {first} tokens and max_length is {m}; "
                f"raise --max-length or use --truncation left"
            )
        return ids, labels, weights, True

    # -- public --------------------------------------------------------------------------------
    def __call__(self, record: Mapping, where: str = "") -> TokenizedExample | None:
        """Tokenise one (normalised) record. Returns None when the ``drop`` policy drops it; raises
        :class:`RecordError` located at ``where`` for a record that cannot be used."""
        try:
            messages = record_messages(record)
            if self.template == "chat":
                ids, spans = self._chat(messages)
            else:
                ids, spans = self._plain(messages, record.get("task"))
            labels = [IGNORE_INDEX] * len(ids)
            for s, e, _ in spans:
                labels[s:e] = ids[s:e]
            weights = self._weights(record, len(ids), spans)
            out = self._truncate(ids, labels, weights)
        except RecordError as err:
            raise err.at(where) from None
        self.stats.records += 1
        if out is None:
            self.stats.dropped += 1
            if len(self.stats.dropped_where) < 100:
                self.stats.dropped_where.append(where)
            return None
        ids, labels, weights, truncated = out
        self.stats.truncated += int(truncated)
        return TokenizedExample(ids, labels, weights, truncated, where)

    def iter(self, records: Iterable[Mapping | tuple[str, Mapping]]) -> Iterator[TokenizedExample]:
        """Tokenise a stream of records (or ``(where, record)`` pairs), skipping dropped ones."""
        for n, item in enumerate(records, 1):
            where, record = item if isinstance(item, tuple) else (f"record {n}", item)
            ex = self(record, where)
            if ex is not None:
                yield ex


def tokenize_record(record: Mapping, tokenizer, **options) -> TokenizedExample | None:
    """Tokenise one record; ``options`` are those of :class:`RecordTokenizer`."""
    return RecordTokenizer(tokenizer, **options)(record)


def collate(
    examples: Sequence[TokenizedExample | Mapping],
    pad_token_id: int,
    *,
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """Right-pad a batch into tensors: ``input_ids`` and ``labels`` (long, labels padded with
    -100), ``attention_mask``, and ``weights`` (float; only when some example has weights, the
    others getting 1 on their labelled positions)."""
    def get(ex, key):
        return getattr(ex, key) if isinstance(ex, TokenizedExample) else ex.get(key)

    if not examples:
        raise ValueError("collate() needs at least one example")
    longest = max(len(get(ex, "input_ids")) for ex in examples)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    n = len(examples)
    input_ids = torch.full((n, longest), int(pad_token_id), dtype=torch.long)
    labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((n, longest), dtype=torch.long)
    any_weights = any(get(ex, "weights") is not None for ex in examples)
    weights = torch.zeros((n, longest), dtype=torch.float32) if any_weights else None
    for row, ex in enumerate(examples):
        ids, labs = get(ex, "input_ids"), get(ex, "labels")
        k = len(ids)
        input_ids[row, :k] = torch.as_tensor(ids, dtype=torch.long)
        labels[row, :k] = torch.as_tensor(labs, dtype=torch.long)
        attention[row, :k] = 1
        if weights is not None:
            w = get(ex, "weights")
            weights[row, :k] = ((labels[row, :k] != IGNORE_INDEX).float() if w is None
                                else torch.as_tensor(w, dtype=torch.float32))
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if weights is not None:
        batch["weights"] = weights
    return batch
