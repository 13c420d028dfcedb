"""``probe``: load a model, collect its token statistics on a record file and summarise its regime.

The regime thresholds, the summary and its text live in :mod:`deft.analysis.probe` (pure
functions over statistics); this recipe adds the model loading and the forward passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..analysis.probe import summarize_token_stats, write_probe

__all__ = ["probe"]


def probe(
    model_spec,
    data,
    *,
    n: Optional[int] = 256,
    batch_size: int = 8,
    max_length: int = 1024,
    template: str = "auto",
    seed: int = 0,
    progress: bool = False,
    skip_invalid: bool = False,
    tokenizer=None,
    device: Optional[str] = None,
    dtype: torch.dtype = torch.float32,
    gates=("deft", "eaft"),
    out=None,
    log=None,
) -> dict:
    """Probe a model's prior on the response tokens of ``data`` (one forward pass, no training).

    Args:
        model_spec: a model spec for :func:`deft.model.load_model` (``smollm2-135m``, a directory,
            a ``.gguf`` file, a hub id) or an already loaded HF causal LM (then pass ``tokenizer``).
        data: a record file of ``deft data``.
        n: records to sample (``None``: all), drawn with ``seed``.
        device: ``"cpu"``, ``"cuda"``, ...; default: CUDA when available for a model loaded here, the
            model's own device for an already loaded one.
        gates: objective gates recorded per token for the gradient-landscape plot.
        out: directory for ``probe.json`` and ``token_stats.npz`` (nothing is written when None).
        progress: show a progress bar with the time left.
        skip_invalid: leave invalid records out instead of stopping at the first one.

    Returns:
        :func:`summarize_token_stats` plus ``model``, ``data``, ``examples``, ``skipped``, ``n``,
        ``seed`` — the content of ``probe.json``.
    """
    from ..model import load_model, load_tokenizer
    from .token_stats import collect_token_stats

    from ..data import iter_rows

    iter_rows(data)  # a missing or unreadable path fails here, before the model is loaded
    if isinstance(model_spec, (str, Path)):
        tokenizer = load_tokenizer(str(model_spec))
        model = load_model(str(model_spec), dtype=dtype)
        name = str(model_spec)
    else:
        if tokenizer is None:
            raise ValueError("pass tokenizer= with an already loaded model")
        model = model_spec
        name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)
    if device is not None:
        model.to(device)
    elif isinstance(model_spec, (str, Path)):  # freshly loaded on CPU: use the GPU when there is one
        model.to("cuda" if torch.cuda.is_available() else "cpu")
    stats = collect_token_stats(model, tokenizer, data, n=n, batch_size=batch_size, max_length=max_length,
                                template=template, seed=seed, gates=gates, log=log, progress=progress,
                                skip_invalid=skip_invalid)
    stats["meta"]["model"] = name
    summary = {"model": name, "data": str(data), "examples": stats["meta"]["examples"],
               "skipped": stats["meta"]["skipped"], "n": n, "seed": seed, "max_length": max_length}
    summary.update(summarize_token_stats(stats))
    if out is not None:
        write_probe(summary, stats, out)
    return summary


