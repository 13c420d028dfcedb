"""``deft compare --protocol paper``: the reference's one-click recipe for one cell of the paper's
Tables 1-3 (regime x model key x objectives), with the published numbers beside it.

Presets, as in the reference's ``scripts/one_click/TEMPLATE.py`` (``luludus/DEFT``): global batch
256, one epoch, bf16, learning rate 2e-5 for ``llama-3.1-8b`` and 5e-5 for every other model key,
maximum length 3072 (math) or 800 (medical, figfont), micro-batch 4 (math) or 16, weight decay
1e-5 for figfont only; the trainer's cosine schedule. Evaluation: math with 16 samples at
temperature 1, top-p 1 on minerva_math, olympiadbench, aime24, amc23 and MATH500 (Average@16,
Table 1); medical greedy with up to 8000 new tokens (Table 2); figfont greedy with at most 5 new
tokens, exact match and Jaro-Winkler (Table 3). The reference's objective names (``original``,
``p``, ``Cayley_Trans``, ``DEFT``) are deft objective aliases.
"""

from __future__ import annotations

from typing import Optional

from .paper_tables import MODEL_OF_KEY, paper_value

__all__ = ["REGIMES", "MODEL_KEYS", "HF_MODEL_OF_KEY", "REFERENCE_PRESETS", "paper_settings", "format_paper_plan",
           "paper_compare"]

REGIMES = ("math", "medical", "figfont")
HF_MODEL_OF_KEY = {
    "qwen-2.5-math-1.5b": "Qwen/Qwen2.5-Math-1.5B", "qwen-2.5-math-7b": "Qwen/Qwen2.5-Math-7B",
    "qwen-2.5-1.5b": "Qwen/Qwen2.5-1.5B", "qwen-2.5-7b": "Qwen/Qwen2.5-7B", "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B", "deepseek-math-7b": "deepseek-ai/deepseek-math-7b-base",
}
MODEL_KEYS = tuple(HF_MODEL_OF_KEY)
# (regime, model key) pairs the reference's one-click generator has a preset for
REFERENCE_PRESETS = {
    "math": ("qwen-2.5-math-1.5b", "qwen-2.5-math-7b", "llama-3.1-8b", "deepseek-math-7b"),
    "medical": ("llama-3.2-3b", "llama-3.1-8b", "qwen-2.5-1.5b", "qwen-2.5-math-7b"),
    "figfont": ("qwen-2.5-7b", "qwen-2.5-1.5b", "llama-3.1-8b", "llama-3.2-3b"),
}
_MATH_PROMPT_TYPE = {"llama-3.1-8b": "llama-base-boxed-with-bos", "deepseek-math-7b": "deepseek-math"}
_BENCHMARKS = {
    "math": ("minerva_math", "olympiadbench", "aime24", "amc23", "math500"),
    "medical": ("medical",),
    "figfont": ("figfont",),
}
# deft benchmark / metric -> the paper's column title
_PAPER_COLUMN = {"math500": "Math500", "minerva_math": "Minerva Math", "olympiadbench": "Olympiad Bench",
                 "aime24": "AIME24", "amc23": "AMC23"}


def paper_settings(regime: str, model_key: str) -> dict:
    """``{"model", "train": {...}, "eval": {...}, "note"}``: the reference's presets for one cell."""
    if regime not in REGIMES:
        raise ValueError(f"--regime must be one of {', '.join(REGIMES)}, got {regime!r}")
    if model_key not in HF_MODEL_OF_KEY:
        raise ValueError(f"--model-key must be one of {', '.join(MODEL_KEYS)}, got {model_key!r}")
    train = {"protocol": "paper", "global_batch_size": 256, "micro_batch_size": 4 if regime == "math" else 16,
             "epochs": 1, "lr": 2e-5 if model_key == "llama-3.1-8b" else 5e-5, "lr_scheduler": "cosine",
             "max_length": 3072 if regime == "math" else 800, "weight_decay": 1e-5 if regime == "figfont" else 0.0,
             "dtype": "bfloat16"}
    if regime == "math":
        evaluation = {"benchmarks": list(_BENCHMARKS["math"]), "k": 16, "temperature": 1.0, "top_p": 1.0,
                      "prompt_type": _MATH_PROMPT_TYPE.get(model_key, "qwen-boxed"), "metric": "Average@16"}
    elif regime == "medical":
        evaluation = {"benchmarks": ["medical"], "k": 1, "temperature": 0.0, "max_new_tokens": 8000,
                      "metric": "accuracy per source and their mean"}
    else:
        evaluation = {"benchmarks": ["figfont"], "k": 1, "temperature": 0.0, "max_new_tokens": 5,
                      "metric": "exact match and Jaro-Winkler"}
    note = None if model_key in REFERENCE_PRESETS[regime] else (
        f"the reference's one-click generator has no {regime} preset for {model_key}; the general rule is used")
    return {"model": HF_MODEL_OF_KEY[model_key], "train": train, "eval": evaluation, "note": note}


def _published(regime: str, model_key: str, objective: str) -> list[str]:
    cols = ["EM", "JW"] if regime == "figfont" else ["Avg"] if regime == "medical" else \
        [*(_PAPER_COLUMN[b] for b in _BENCHMARKS["math"]), "Avg"]
    out = []
    for col in cols:
        cell = paper_value(regime, model_key, objective, col)
        if cell is not None:
            out.append(f"{col} {cell['value']:.2f} (Table {cell['table']}, row {cell['row']})")
    return out


def format_paper_plan(regime: str, model_key: str, objectives: list[str], out: str,
                      train_options: Optional[dict] = None) -> str:
    """The plan of one paper cell: presets, one run per objective, the published numbers."""
    from ..objectives import parse_objective

    s = paper_settings(regime, model_key)
    train = dict(s["train"], **(train_options or {}))
    lines = [f"paper protocol: regime {regime}, model key {model_key} -> {s['model']} "
             f"(paper: {MODEL_OF_KEY[model_key]})",
             "training (reference presets): " + ", ".join(f"{k} {v}" for k, v in train.items()),
             "evaluation: " + ", ".join(f"{k} {v}" for k, v in s["eval"].items())]
    if s["note"]:
        lines.append(f"note: {s['note']}")
    for name in ["base", *objectives]:
        spec = "base" if name == "base" else parse_objective(name).spec
        published = _published(regime, model_key, name)
        where = "" if name == "base" else f" -> {out}/runs/{spec}"
        lines.append(f"  {name} ({spec}){where}: paper " + ("; ".join(published) if published else "has no cell"))
    return "\n".join(lines)


def paper_compare(cfg, train_options: Optional[dict] = None) -> str:
    """``deft compare --protocol paper``: with ``--dry-run`` the plan; the full run needs the paper
    protocol's data and evaluation, which are prepared by ``deft data --protocol paper``."""
    objectives = [o.strip() for o in cfg.objectives.split(",") if o.strip()]
    plan = format_paper_plan(cfg.regime, cfg.model_key, objectives, cfg.out, train_options)
    if cfg.dry_run:
        return plan
    raise ValueError("the one-click paper run is not available yet: print its plan with --dry-run and run its steps "
                     "with 'deft data --protocol paper', 'deft train --protocol paper' and 'deft eval'")
