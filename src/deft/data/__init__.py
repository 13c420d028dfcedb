"""Data: one record format, the paper's three regimes and users' own files, validation with
located errors, and the tokenised view (response-only labels) that the trainer consumes.

* records — :func:`normalize_record`, :func:`record_messages` (:mod:`deft.data.records`)
* reading and writing — :func:`iter_rows`, :func:`iter_records`, :func:`read_records` (every
  format: JSONL, JSON, Parquet, CSV/TSV, datasets directories; deft, TRL, Alpaca, ShareGPT shapes),
  :func:`write_jsonl`, :func:`check_output_path`
* sources — :func:`source_records` (``figfont``, ``rg:<task>``, ``math``, ``medical``, ``mix``,
  files), :func:`extract_boxed`, :func:`rg_score` (:mod:`deft.data.sources`)
* validation — :func:`check_records`, :func:`validate_source`, :class:`DataError`
* tokenisation — :class:`RecordTokenizer`, :func:`tokenize_record`, :func:`collate`,
  :func:`tokenize_to_dataset`
* statistics — :func:`token_stats`
* the paper's protocol — :func:`figfont_paper_records`, :func:`math_paper_records`,
  :func:`medical_paper_records`, :func:`paper_family` (:mod:`deft.data.paper`) and the ``paper``
  prompt template (:data:`PAPER_STRINGS`)
"""

from .dataset import tokenize_to_dataset
from .readers import iter_records, iter_rows, write_jsonl
from .records import RECORD_KEYS, RecordError, normalize_record, parse_key_map, record_messages
from .sources import (
    FIGFONT_SYSTEM_PROMPT,
    MATH_PROMPT_SUFFIX,
    MEDICAL_PROMPT_SUFFIX,
    extract_boxed,
    figfont_records,
    math_records,
    medical_records,
    mix_records,
    question_split,
    rg_records,
    rg_score,
    source_records,
)
from .paper import (
    FIGFONT_PAPER_SYSTEM,
    PAPER_MODELS,
    figfont_paper_records,
    math_paper_records,
    medical_paper_records,
    paper_family,
)
from .stats import TokenStats, token_stats
from .templates import PAPER_STRINGS, TEMPLATES, PaperTemplate, PlainTemplate, resolve_template
from .tokenize import (
    IGNORE_INDEX,
    RecordTokenizer,
    TokenizedExample,
    TokenizeStats,
    collate,
    special_token_ids,
    tokenize_record,
)
from .readers import check_output_path
from .validate import DataError, ValidationReport, check_records, read_records, validate_source

__all__ = [
    "DataError",
    "FIGFONT_PAPER_SYSTEM",
    "FIGFONT_SYSTEM_PROMPT",
    "IGNORE_INDEX",
    "MATH_PROMPT_SUFFIX",
    "MEDICAL_PROMPT_SUFFIX",
    "PAPER_MODELS",
    "PAPER_STRINGS",
    "PaperTemplate",
    "PlainTemplate",
    "RECORD_KEYS",
    "RecordError",
    "RecordTokenizer",
    "TEMPLATES",
    "TokenStats",
    "TokenizeStats",
    "TokenizedExample",
    "ValidationReport",
    "check_output_path",
    "check_records",
    "collate",
    "extract_boxed",
    "figfont_paper_records",
    "figfont_records",
    "iter_records",
    "iter_rows",
    "math_paper_records",
    "math_records",
    "medical_paper_records",
    "medical_records",
    "mix_records",
    "normalize_record",
    "paper_family",
    "parse_key_map",
    "question_split",
    "read_records",
    "record_messages",
    "resolve_template",
    "rg_records",
    "rg_score",
    "source_records",
    "special_token_ids",
    "token_stats",
    "tokenize_record",
    "tokenize_to_dataset",
    "validate_source",
    "write_jsonl",
]
