"""``DataConfig``: every option of ``deft data``, declared once on :mod:`deft.config` (help text,
aliases, choices and range checks; YAML via ``--config``). Nothing here imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import ConfigError, option

__all__ = ["DataConfig", "SOURCE_NAMES", "TEMPLATE_CHOICES"]

#: the source names of ``deft data SOURCE`` (besides a record file path)
SOURCE_NAMES = ("figfont", "rg", "math", "medical", "mix", "jsonl", "json", "parquet", "csv", "generic", "records",
                "check", "stats")
TEMPLATE_CHOICES = ("auto", "chat", "plain", "qa", "paper", "paper:qwen", "paper:llama", "paper:deepseek", "paper-sft",
                    "paper-sft:qwen", "paper-sft:llama", "paper-sft:deepseek")


def _at_least_two(value) -> Optional[str]:
    return None if value >= 2 else "must be at least 2 tokens"


@dataclass
class DataConfig:
    """Options of ``deft data``: what to build (``source``, ``input``), where (``out``), how many and
    which (``n``, ``seed``, ``split``, ``protocol``), how to read users' files (``map``) and the
    tokenizer checks (``model``, ``max_length``, ``template``)."""

    COMMAND = "data"

    source: str = option("", "figfont, rg:TASK, math, medical, mix, jsonl, check, stats, or a record file", flag=False)
    input: Optional[str] = option(None, "input file, datasets directory or hub dataset id (math, medical, jsonl, "
                                        "check, stats)", flag=False)
    out: Optional[str] = option(None, "output JSON Lines file (written atomically); required except for check and "
                                      "stats", aliases=("output",))
    n: Optional[int] = option(None, "number of records: generated for figfont/rg, total for mix, a seeded sample "
                                    "for files (default: 1000 generated, all rows of a file; the paper protocol: the "
                                    "whole split, the first N rows of a file)", aliases=("size",), check="positive")
    seed: Optional[int] = option(None, "seed for generation, sampling and mixing (default 0; the paper protocol "
                                       "fixes 42)", check="non_negative")
    split: str = option("train", "train or test for generated tasks (disjoint questions); the split to read from "
                                 "datasets")
    protocol: str = option("deft", "deft, or paper: figfont/math/medical exactly as the paper's reference pipeline "
                                   "builds them (FigFont seed 42, train = items 0-39,999, test = 40,000-44,999; its "
                                   "prompts per model family)", choices=("deft", "paper"))
    model_key: Optional[str] = option(None, "the paper's model key (e.g. qwen-2.5-math-1.5b): the prompt family of "
                                            "--protocol paper math/medical")
    # a JSON value or a file name may hold a comma: these items are never split
    task_args: list[str] = option([], "parameters of the reasoning-gym task config (KEY=VALUE, values read as JSON), "
                                  "e.g. max_word_len=7", flag=False, split="none")
    part: list[str] = option([], "a mix component SPEC=PROPORTION: figfont, rg:TASK, math:FILE, medical:FILE or a "
                             "record file", flag=False, split="none")
    map: list[str] = option([], "read KEY from another column, KEY=COLUMN, e.g. prompt=question (math: "
                            "problem/solution/answer/id; medical: question/options/answer_idx/answer/reasoning/id; "
                            "paper math: question/answer; paper medical: question/response/answer; files: record keys "
                            "and completion)", aliases=("key_map",), flag=False)
    system: str = option("default", "system prompt for generated tasks: 'default' is the task's own (figfont's asks "
                                    "for the word only), 'none' none, any other text is the prompt")
    prompt_suffix: str = option("default", "text appended to math/medical prompts: 'default' is 'Please reason step "
                                           "by step, and put your final answer within \\boxed{}.', 'none' nothing, "
                                           "any other text is appended")
    keep_extra: bool = option(False, "keep unrecognised columns of a record file under 'metadata'")
    skip_invalid: bool = option(False, "drop invalid records and report their count instead of failing")
    max_errors: int = option(20, "how many problems to print (all are counted)", check="positive")
    model: Optional[str] = option(None, "model whose tokenizer checks templating/truncation (needed by stats): "
                                        "smollm2-135m, a .gguf file, a model directory or a hub id")
    max_length: Optional[int] = option(None, "maximum tokens per example: with --model, records are checked against "
                                             "it; stats counts the records longer than it", check=_at_least_two)
    truncation: str = option("left", "over-long records: left = cut the prompt from the left, right = cut the end "
                                     "(all-prompt records are errors), drop = leave them out",
                             choices=("left", "right", "drop"))
    template: str = option("auto", "prompt template: the tokenizer's chat template (auto when it has one), a plain "
                                   "text template, or the paper's literal strings (paper: the family from the model "
                                   "name)", choices=TEMPLATE_CHOICES)
    all_turns: bool = option(False, "train on every assistant turn of a conversation, not only the last")
    trust_remote_code: bool = option(False, "allow the model's own tokenizer code (only for models you trust)")

    @property
    def kind(self) -> str:
        """The source's kind: one of :data:`SOURCE_NAMES` (a file path given as the source is ``jsonl``)."""
        name = self.source.partition(":")[0]
        return name if name in SOURCE_NAMES else "jsonl"

    def validate(self) -> None:
        """Cross-field rules, each a one-line :class:`~deft.config.ConfigError`."""
        if not self.source:
            raise ConfigError("source: say what to build, e.g. deft data figfont --out f.jsonl (see deft data --help)")
        if self.protocol == "paper" and self.seed not in (None, 42):
            raise ConfigError(f"seed: the paper protocol uses seed 42 (got {self.seed}); drop --seed")
        if self.max_length is not None and not self.model:
            raise ConfigError("max_length: needs --model (lengths are counted in that model's tokens)")
        if self.all_turns and self.template.startswith(("plain", "qa", "paper")):
            raise ConfigError(f"all_turns: needs a chat template (--template {self.template} trains on the last turn)")
