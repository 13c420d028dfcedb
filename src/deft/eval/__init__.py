"""Evaluation: answer extraction, scorers, benchmark readers, Average@k metrics and ``deft eval``.

* :func:`score` — ``score(scorer, prediction, reference, **context) -> float in [0, 1]`` with deft's
  scorers ``math``, ``mcq``, ``exact``, ``jaro_winkler``, ``rg:<task>`` and the paper's
  ``exact_paper``, ``exact_normalized_paper``, ``jaro_winkler_paper``, ``math_paper``, ``mcq_paper``
  (:mod:`.scorers`); :func:`register_scorer` declares another one (help, listing, scores and report
  columns come from that one declaration), :func:`list_scorers` lists them.
* :func:`extract_boxed`, :func:`extract_math_answer`, :func:`extract_choice` (:mod:`.extract`).
* :func:`summarize`, :func:`average_row` — n, k, Average@k, Pass@k, Maj@k, standard error
  (:mod:`.metrics`).
* :func:`load_benchmark`, :func:`read_medical` and :class:`Problem` — math benchmark files, figfont,
  reasoning-gym tasks, record files, the m1 medical suite (:mod:`.benchmarks`, :mod:`.medical`);
  :func:`register_benchmark` declares another named benchmark, :func:`list_benchmarks` lists them.
* :class:`EvalConfig` and :func:`evaluate` — the whole evaluation, resumable in an output folder
  (:mod:`.config`, :mod:`.runner`, :mod:`.outdir`); the paper's literal prompts in :mod:`.prompts`.
"""

from .benchmarks import (
    BENCHMARKS, DEFAULT_EVAL_SEED, MATH_BENCHMARKS, MATH_PROMPT_SUFFIX, Benchmark, Problem, RawPrompt,
    benchmark_names, figfont_problems, list_benchmarks, load_benchmark, read_math_benchmark, read_records,
    register_benchmark, rg_problems, unregister_benchmark,
)
from .config import EvalConfig
from .extract import extract_boxed, extract_choice, extract_math_answer, extract_tagged
from .medical import read_medical
from .metrics import average_at_k, average_row, majority_at_k, pass_at_k, stderr, summarize, summarize_scorers
from .report import format_table
from .scorers import (
    PAPER_SCORERS, SCORERS, Scorer, check_scorer, extracted_answer, jaro_winkler, list_scorers, math_equal,
    register_scorer, score, scorer_names, unregister_scorer,
)

__all__ = [
    "BENCHMARKS", "Benchmark", "DEFAULT_EVAL_SEED", "EvalConfig", "MATH_BENCHMARKS", "MATH_PROMPT_SUFFIX",
    "PAPER_SCORERS", "Problem", "RawPrompt", "SCORERS", "Scorer", "average_at_k", "average_row", "benchmark_names",
    "check_scorer", "extract_boxed", "extract_choice", "extract_math_answer", "extract_tagged", "extracted_answer",
    "figfont_problems", "format_table", "jaro_winkler", "list_benchmarks", "list_scorers", "load_benchmark",
    "majority_at_k", "math_equal", "pass_at_k", "read_math_benchmark", "read_medical", "read_records",
    "register_benchmark", "register_scorer", "rg_problems", "score", "scorer_names", "stderr", "summarize",
    "summarize_scorers", "unregister_benchmark", "unregister_scorer",
]

# generation and the end-to-end evaluation import torch: loaded on first use, so that the
# command line's --help and the scorers stay light
_LAZY = {
    "Generation": "generate", "HFGenerator": "generate", "VLLMGenerator": "generate_vllm", "generate": "generate",
    "generate_samples": "generate", "load_generator": "runner", "render_prompts": "generate",
    "stop_token_ids": "generate", "load_problems": "problems", "default_max_new_tokens": "runner",
    "evaluate": "runner",
}
__all__ += sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
