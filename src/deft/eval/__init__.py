"""Evaluation: answer extraction, scorers, benchmark readers and Average@k metrics.

* :func:`score` — ``score(scorer, prediction, reference, **kw) -> float in [0, 1]`` with scorers
  ``math``, ``mcq``, ``exact``, ``jaro_winkler``, ``rg:<task>`` (:mod:`.scorers`).
* :func:`extract_boxed`, :func:`extract_math_answer`, :func:`extract_choice` (:mod:`.extract`).
* :func:`summarize`, :func:`average_row` — n, k, Average@k, Pass@k, Maj@k, standard error
  (:mod:`.metrics`).
* :func:`load_benchmark` and :class:`Problem` — math benchmark files, figfont, reasoning-gym tasks,
  record files (:mod:`.benchmarks`).
"""

from .benchmarks import (
    BENCHMARKS, DEFAULT_EVAL_SEED, MATH_BENCHMARKS, MATH_PROMPT_SUFFIX, Problem, figfont_problems,
    load_benchmark, read_math_benchmark, read_records, rg_problems,
)
from .extract import extract_boxed, extract_choice, extract_math_answer, extract_tagged
from .metrics import average_at_k, average_row, majority_at_k, pass_at_k, stderr, summarize, summarize_scorers
from .scorers import SCORERS, check_scorer, extracted_answer, jaro_winkler, math_equal, score

__all__ = [
    "BENCHMARKS", "DEFAULT_EVAL_SEED", "MATH_BENCHMARKS", "MATH_PROMPT_SUFFIX", "Problem", "SCORERS",
    "average_at_k", "average_row", "check_scorer", "extract_boxed", "extract_choice",
    "extract_math_answer", "extract_tagged", "extracted_answer", "figfont_problems", "jaro_winkler",
    "load_benchmark", "majority_at_k", "math_equal", "pass_at_k", "read_math_benchmark", "read_records",
    "rg_problems", "score", "stderr", "summarize", "summarize_scorers",
]

# generation and the end-to-end protocol (deft eval)
from .generate import Generation, HFGenerator, VLLMGenerator, generate, generate_samples, load_generator, render_prompts, stop_token_ids
from .runner import default_max_new_tokens, evaluate, format_table, load_problems

__all__ += [
    "Generation", "HFGenerator", "VLLMGenerator", "default_max_new_tokens", "evaluate", "format_table",
    "generate", "generate_samples", "load_generator", "load_problems", "render_prompts", "stop_token_ids",
]
