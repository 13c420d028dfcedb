"""The paper's data protocol (``--protocol paper``): the reference pipeline's items, prompts and
responses for the three regimes, so that a run can be put next to the paper's Tables 1-3.

Facts of the reference (repository ``luludus/DEFT``, scripts ``data/data_process_*.py``,
``main_verl/utils/dataset/sft_dataset.py`` and ``scripts/one_click/TEMPLATE.py``):

* **FigFont** — reasoning-gym ``figlet_font`` with ``min_word_len=2, max_word_len=5,
  space_letters=True`` and **seed 42**; the train split is items ``0 .. 39,999`` and the test split
  items ``40,000 .. 44,999``, by index (reasoning-gym seeds item ``i`` with ``seed + i``, so any
  index is generated alone). The system prompt is :data:`FIGFONT_PAPER_SYSTEM`, the user turn the
  question, the response the bare word. The reference does not deduplicate: 13 of the 5,000 test
  questions also occur among the train questions (same word, font and wording drawn twice, e.g.
  train item 4,885 = test item 41,655), and the protocol keeps its split as it is.
* **Math** — rows ``question`` / ``answer`` (the worked solution; NuminaMath-CoT's ``problem`` /
  ``solution`` and the reference's processed ``extra_info`` rows are read too), in file order. The
  response is the whole solution, unchanged; the gold answer is its last ``\\boxed{}``. The prompt
  depends on the model family: Qwen2.5-Math models are trained with their own chat template, whose
  default system prompt is the boxed instruction (:data:`BOXED_INSTRUCTION`) over the bare
  question; Llama and DeepSeek base models get the harness strings ``llama-base-boxed-with-bos`` and
  ``deepseek-math`` (question, newline, instruction).
* **Medical** — m23K rows (``prompt`` or ``question``, ``answer_letter``, ``answer_string``,
  ``distilled_answer_string``; or the processed ``extra_info`` rows); the user turn is the question,
  a newline and the boxed instruction; the response is the distilled answer **without** the
  thinking; the system prompt depends on the family (Qwen: "You are a helpful assistant."; Llama:
  the Llama 3.1 date header; DeepSeek: none).

Each record carries its ``system`` prompt, so a file is self-describing; the ``paper`` prompt
template (:mod:`deft.data.templates`) renders it with the reference's literal strings, the same in
training and evaluation. The reference itself trains Llama base models on FigFont and medical
prompts wrapped once more in its Llama math string (and evaluates them unwrapped); ``paper-sft``
reproduces that training quirk. Its Qwen math training prompt is the Qwen2.5-Math chat template
(system = the boxed instruction, user = the bare question), while its math evaluation uses the
harness's ``qwen-boxed`` string ("You are a helpful assistant." and the instruction after the
question): records carry the training form.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

from .records import RecordError, parse_key_map

__all__ = [
    "PAPER_SEED",
    "FIGFONT_PAPER_ARGS",
    "FIGFONT_PAPER_SPLITS",
    "FIGFONT_PAPER_SYSTEM",
    "BOXED_INSTRUCTION",
    "PAPER_MODELS",
    "PAPER_FAMILIES",
    "PAPER_REGIMES",
    "paper_family",
    "require_family",
    "paper_system",
    "paper_user_text",
    "figfont_paper_records",
    "math_paper_records",
    "medical_paper_records",
]

PAPER_SEED = 42
FIGFONT_PAPER_ARGS = {"min_word_len": 2, "max_word_len": 5, "space_letters": True}
FIGFONT_PAPER_SPLITS = {"train": (0, 40_000), "test": (40_000, 45_000)}
FIGFONT_PAPER_SYSTEM = (
    "You are an expert at decoding Figlet Font ASCII art. When given Figlet Font text, identify the word it "
    "represents and output only that without any explanations or additional text."
)
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
LLAMA_DATE_SYSTEM = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
HELPFUL_SYSTEM = "You are a helpful assistant."

#: the reference's model keys and the base models they name (scripts/one_click/TEMPLATE.py)
PAPER_MODELS = {
    "qwen-2.5-math-1.5b": "Qwen/Qwen2.5-Math-1.5B",
    "qwen-2.5-math-7b": "Qwen/Qwen2.5-Math-7B",
    "qwen-2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "qwen-2.5-7b": "Qwen/Qwen2.5-7B",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    "deepseek-math-7b": "deepseek-ai/deepseek-math-7b-base",
}
PAPER_FAMILIES = ("qwen", "llama", "deepseek")
PAPER_REGIMES = ("figfont", "math", "medical")

# system prompt per (regime, family); None: the family's string has no system turn
_SYSTEM = {
    ("figfont", "qwen"): FIGFONT_PAPER_SYSTEM,
    ("figfont", "llama"): FIGFONT_PAPER_SYSTEM,
    ("math", "qwen"): BOXED_INSTRUCTION,  # Qwen2.5-Math's chat template default
    ("math", "llama"): HELPFUL_SYSTEM,
    ("math", "deepseek"): None,
    ("medical", "qwen"): HELPFUL_SYSTEM,
    ("medical", "llama"): LLAMA_DATE_SYSTEM,
    ("medical", "deepseek"): None,
}


def paper_family(model: str | None) -> str | None:
    """The prompt family (``qwen``, ``llama`` or ``deepseek``) of a model key, hub id or path, as the
    reference decides it (by name: DeepSeek first, then Llama, then Qwen); None when unknown."""
    if not model:
        return None
    name = PAPER_MODELS.get(str(model).lower(), str(model)).lower()
    for family in ("deepseek", "llama", "qwen"):
        if family in name:
            return family
    return None


def require_family(regime: str, *, model_key: str | None = None, model: str | None = None) -> str:
    """The family for ``regime`` from ``model_key`` (checked against :data:`PAPER_MODELS`) or a model
    name; raises ``ValueError`` saying what to pass when neither tells it or the regime has no
    prompt for that family."""
    if model_key is not None and model_key.lower() not in PAPER_MODELS:
        raise ValueError(f"--model-key {model_key!r}: unknown; use one of {', '.join(PAPER_MODELS)}")
    family = paper_family(model_key) or paper_family(model)
    if family is None:
        what = f"--model {model!r}" if model else "no --model-key or --model"
        raise ValueError(f"--protocol paper: the {regime} prompts depend on the model family and {what} names none; "
                         f"pass --model-key ({', '.join(PAPER_MODELS)})")
    if (regime, family) not in _SYSTEM:
        ok = sorted({f for r, f in _SYSTEM if r == regime})
        raise ValueError(f"--protocol paper: the reference has no {regime} prompt for {family} models "
                         f"(only {', '.join(ok)})")
    return family


def paper_system(regime: str, family: str) -> str | None:
    """The system prompt of a regime's records for a family (None: no system turn)."""
    return _SYSTEM[(regime, family)]


def paper_user_text(regime: str, family: str, question: str) -> str:
    """The user turn of a regime's record: the question, followed for medical (and for math on Llama
    and DeepSeek) by a newline and :data:`BOXED_INSTRUCTION`."""
    if regime == "medical" or (regime == "math" and family != "qwen"):
        return f"{question}\n{BOXED_INSTRUCTION}"
    return question


def _record(regime: str, family: str | None, question: str, response: str, answer: str, ident, meta) -> dict:
    system = FIGFONT_PAPER_SYSTEM if family is None else paper_system(regime, family)
    rec = {"prompt": paper_user_text(regime, family or "qwen", question), "response": response}
    if system:
        rec["system"] = system
    rec.update({"answer": answer, "task": regime, "id": ident})
    rec["metadata"] = ({**meta, "protocol": "paper"} if family is None
                       else {**meta, "protocol": "paper", "family": family})
    return rec


def figfont_paper_records(split: str = "train", *, n: int | None = None, start: int = 0) -> Iterator[tuple[str, dict]]:
    """The reference's FigFont items of ``split`` (``train``: indices 0..39,999; ``test``:
    40,000..44,999), from ``start`` (an offset inside the split) for ``n`` items (default: to the
    end of the split). Records: system :data:`FIGFONT_PAPER_SYSTEM`, prompt the question, response
    and answer the word, task ``figfont``."""
    from ..io import json_safe
    from .sources_rg import rg_dataset

    if split not in FIGFONT_PAPER_SPLITS:
        raise ValueError(f"--split {split!r}: the paper's FigFont has the splits train and test")
    lo, hi = FIGFONT_PAPER_SPLITS[split]
    if start < 0 or lo + start >= hi:
        raise ValueError(f"start {start}: the paper's FigFont {split} split has {hi - lo} items")
    end = hi if n is None else min(hi, lo + start + n)
    if n is not None and n <= 0:
        raise ValueError(f"--n must be positive (got {n})")
    import json

    ds = rg_dataset("figlet_font", json.dumps(FIGFONT_PAPER_ARGS, sort_keys=True), PAPER_SEED, hi)
    for idx in range(lo + start, end):
        entry = ds[idx]
        meta = json_safe(entry.get("metadata") or {})
        meta["reasoning_gym"] = {"task": "figlet_font", "args": dict(FIGFONT_PAPER_ARGS), "seed": PAPER_SEED,
                                 "index": idx}
        word = str(entry["answer"])
        yield (f"figfont[paper,{split}]#{idx}",
               _record("figfont", None, entry["question"], word, word, f"figfont-paper-{split}-{idx}", meta))


def _field(row: Mapping, key_map: Mapping[str, str], field: str, names: tuple[str, ...]) -> Any:
    """A row's value for ``field``: the mapped column, else the first present of ``names``, looked up
    in the row and then in its ``extra_info`` (the reference's processed files)."""
    if field in key_map:
        if key_map[field] not in row:
            raise RecordError(f"missing column {key_map[field]!r} (mapped to {field!r}); "
                              f"columns are: {', '.join(map(str, row))}")
        return row[key_map[field]]
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), Mapping) else {}
    for where in (extra, row) if extra else (row,):
        for name in names:
            if where.get(name) is not None:
                return where[name]
    return None


def _text(value, name: str, row: Mapping, flag: str) -> str:
    if value is None:
        raise RecordError(f"missing {name!r} (columns are: {', '.join(map(str, row))}; "
                          f"map another with --map {flag}=COLUMN)")
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"empty or non-string {name!r}")
    return value


def _rows(source, split: str, n: int | None, convert) -> Iterator[tuple[str, dict | RecordError]]:
    """The first ``n`` rows of ``source`` (the reference selects a leading range), converted."""
    from .readers import iter_rows

    if n is not None and n <= 0:
        raise ValueError(f"--n must be positive (got {n})")
    for index, (where, row) in enumerate(iter_rows(source, split=split)):
        if n is not None and index >= n:
            return
        if isinstance(row, RecordError):
            yield where, row
            continue
        try:
            if not isinstance(row, Mapping):
                raise RecordError(f"expected a JSON object, got {type(row).__name__}")
            yield where, convert(row, index)
        except RecordError as err:
            yield where, err.at(where)


MATH_PAPER_FIELDS = ("question", "answer")
MEDICAL_PAPER_FIELDS = ("question", "response", "answer")


def math_paper_records(source, family: str, *, n: int | None = None, split: str = "train",
                       key_map: Mapping[str, str] | None = None) -> Iterator[tuple[str, dict | RecordError]]:
    """Math records as the reference builds them for ``family`` (module docstring), from the first
    ``n`` rows of a file or dataset. ``key_map`` renames ``question`` / ``answer`` (the solution)."""
    from ..text import extract_boxed

    km = parse_key_map(key_map, MATH_PAPER_FIELDS)

    def convert(row, index):
        question = _text(_field(row, km, "question", ("question", "problem")), "question", row, "question")
        solution = _text(_field(row, km, "answer", ("answer", "solution")), "answer", row, "answer")
        gold = extract_boxed(solution)
        if not gold:
            raise RecordError("the solution has no complete \\boxed{...} final answer")
        return _record("math", family, question, solution, gold, index, {"index": index})

    return _rows(source, split, n, convert)


_LETTER = re.compile(r"^\(?([A-Za-z])[).:]?$")


def medical_paper_records(source, family: str, *, n: int | None = None, split: str = "train",
                          key_map: Mapping[str, str] | None = None) -> Iterator[tuple[str, dict | RecordError]]:
    """Medical records as the reference builds them for ``family``: the distilled answer without its
    thinking is the response, the option letter the answer. ``key_map`` renames ``question``,
    ``response`` (the distilled answer) and ``answer`` (the letter)."""
    km = parse_key_map(key_map, MEDICAL_PAPER_FIELDS)

    def convert(row, index):
        question = _text(_field(row, km, "question", ("prompt", "question")), "question", row, "question")
        response = _text(_field(row, km, "response", ("distilled_answer_string", "answer_raw")),
                         "distilled_answer_string", row, "response")
        letter = _field(row, km, "answer", ("answer_letter", "answer_idx"))
        m = _LETTER.match(letter.strip()) if isinstance(letter, str) else None
        if not m:
            raise RecordError(f"'answer_letter' must be one option letter such as \"C\" (got {letter!r})")
        meta = {"index": index}
        text = _field(row, {}, "answer_string", ("answer_string",))
        if isinstance(text, str):
            meta["answer_text"] = text
        return _record("medical", family, question, response, m.group(1).upper(), index, meta)

    return _rows(source, split, n, convert)
