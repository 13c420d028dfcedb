"""Data: one record format, the paper's three regimes and users' own files, validation with
located errors, and the tokenised view (response-only labels) that the trainer consumes.

* records — :func:`normalize_record`, :func:`record_messages` (:mod:`deft.data.records`)
* reading and writing — :func:`iter_rows`, :func:`iter_records`, :func:`read_records` (every
  format: JSONL, JSON, Parquet, CSV/TSV, datasets directories; deft, TRL, Alpaca, ShareGPT shapes),
  :func:`write_jsonl`, :func:`check_output_path` (:mod:`deft.data.readers`)
* sources — :func:`source_records` (``figfont``, ``rg:<task>``, ``math``, ``medical``, ``mix``,
  files), :func:`rg_score` (:mod:`deft.data.sources` and its ``sources_*`` modules)
* the paper's protocol — :func:`figfont_paper_records`, :func:`math_paper_records`,
  :func:`medical_paper_records`, :func:`paper_family` (:mod:`deft.data.paper`) and the ``paper``
  prompt template (:data:`PAPER_STRINGS`, :mod:`deft.data.templates`)
* validation — :func:`check_records`, :func:`validate_source`, :class:`DataError`
* tokenisation — :class:`RecordTokenizer`, :func:`tokenize_record`, :func:`collate`,
  :func:`tokenize_to_dataset`, :func:`special_token_ids`
* statistics — :func:`token_stats`
* the command — :class:`DataConfig` (:mod:`deft.data.config`), :func:`run_data`

Names load on first use, so that importing the package (or ``deft data --help``) does not import
torch; ``from deft.data import X`` works for every name of ``__all__``.
"""

from __future__ import annotations

import importlib

# name -> submodule that defines it
_EXPORTS = {
    "tokenize_to_dataset": "dataset",
    "iter_records": "readers", "iter_rows": "readers", "write_jsonl": "readers", "check_output_path": "readers",
    "RECORD_KEYS": "records", "RecordError": "records", "normalize_record": "records", "parse_key_map": "records",
    "record_messages": "records",
    "FIGFONT_SYSTEM_PROMPT": "sources", "MATH_PROMPT_SUFFIX": "sources", "MEDICAL_PROMPT_SUFFIX": "sources",
    "extract_boxed": "sources", "figfont_records": "sources", "math_records": "sources", "medical_records": "sources",
    "mix_records": "sources", "question_split": "sources", "rg_records": "sources", "rg_score": "sources",
    "source_records": "sources",
    "FIGFONT_PAPER_SYSTEM": "paper", "PAPER_MODELS": "paper", "figfont_paper_records": "paper",
    "math_paper_records": "paper", "medical_paper_records": "paper", "paper_family": "paper",
    "TokenStats": "stats", "token_stats": "stats",
    "PAPER_STRINGS": "templates", "TEMPLATES": "templates", "PaperTemplate": "templates", "PlainTemplate": "templates",
    "resolve_template": "templates", "HARNESS_PROMPTS": "templates", "harness_prompt": "templates",
    "IGNORE_INDEX": "tokenize", "RecordTokenizer": "tokenize", "TokenizedExample": "tokenize",
    "TokenizeStats": "tokenize", "collate": "tokenize", "special_token_ids": "tokenize", "tokenize_record": "tokenize",
    "DataError": "validate", "ValidationReport": "validate", "check_records": "validate", "read_records": "validate",
    "validate_source": "validate",
    "DataConfig": "config", "run_data": "command",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deft.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
