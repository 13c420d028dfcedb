"""``probe``: load a model, collect its token statistics on a record file and summarise its regime.

The regime thresholds, the summary and its text live in :mod:`deft.analysis.probe` (pure
functions over statistics); this recipe adds the model loading and the forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..analysis.probe import summarize_token_stats, write_probe
from ..config import option

__all__ = ["ProbeConfig", "probe"]


@dataclass
class ProbeConfig:
    """Every option of ``deft probe`` and :func:`probe`."""

    COMMAND = "probe"
    model: str = option("smollm2-135m", "model: 'smollm2-135m' (embedded), a model folder (e.g. a run's final/), a "
                        ".gguf file or an HF hub id")
    data: Optional[str] = option(None, "record file written by 'deft data' (.jsonl/.json/.parquet)")
    n: int = option(256, "number of records to sample (0 = all)", check="non_negative")
    seed: int = option(0, "seed of the record sample")
    batch_size: int = option(8, "records per forward pass", check="positive")
    max_length: int = option(1024, "maximum tokens per record, as in training", check="positive")
    template: str = option("auto", "prompt format: auto (the tokenizer's chat template, else plain), chat, or a plain "
                           "template name")
    device: Optional[str] = option(None, "torch device (default: cuda when available, else cpu)")
    dtype: str = option("float32", "model weights dtype (the loss is computed in fp32 either way)",
                        choices=("float32", "bfloat16", "float16"))
    gates: list[str] = option(["deft", "eaft"], "comma-separated objectives whose per-token gate is stored for the "
                              "gradient-landscape plot (one extra forward pass each after the first; 'none' for "
                              "none)", split="specs")
    out: Optional[str] = option(None, "folder for probe.json and token_stats.npz (default: print only)",
                                aliases=("output_dir",))
    json: bool = option(False, "print the probe.json content instead of the text summary")
    progress: bool = option(True, "show a progress bar with the time left")
    skip_invalid: bool = option(False, "leave invalid records out (counted) instead of stopping at the first one")

    def validate(self) -> "ProbeConfig":
        """A data file is required; the device must exist here; ``--gates none`` records no gate."""
        from ..config import ConfigError, check_device

        if not self.data:
            raise ConfigError("pass --data FILE (records written by 'deft data')")
        if [g.lower() for g in self.gates] == ["none"]:
            self.gates = []
        elif any(g.lower() == "none" for g in self.gates):
            raise ConfigError(f"--gates {','.join(self.gates)}: 'none' stands alone (no gate); drop it or the others")
        check_device(self.device)
        return self


def probe(cfg: ProbeConfig, *, model=None, tokenizer=None, log=None) -> dict:
    """Probe a model's prior on the response tokens of ``cfg.data`` (one forward pass, no training).

    Args:
        cfg: the options (:class:`ProbeConfig`): ``model`` is a spec for
            :func:`deft.model.load_model` (``smollm2-135m``, a directory, a ``.gguf`` file, a hub id);
            ``n`` records (0: all) are drawn with ``seed``; ``gates`` are the objective gates recorded
            per token for the gradient-landscape plot; ``out`` is the directory for ``probe.json`` and
            ``token_stats.npz`` (nothing is written when None); ``device`` defaults to CUDA when
            available for a model loaded here, the model's own device for an already loaded one.
        model: an already loaded HF causal LM to probe instead of loading ``cfg.model`` (then pass
            ``tokenizer``).
        log: a callable for progress lines (default: none).

    Returns:
        :func:`summarize_token_stats` plus ``model``, ``data``, ``examples``, ``skipped``, ``n``,
        ``seed`` — the content of ``probe.json``.
    """
    import torch

    from ..model import load_model, load_tokenizer
    from .token_stats import collect_token_stats

    from ..data import iter_rows

    n = cfg.n or None
    iter_rows(cfg.data)  # a missing or unreadable path fails here, before the model is loaded
    if model is None:
        tokenizer = load_tokenizer(cfg.model)
        model = load_model(cfg.model, dtype=getattr(torch, cfg.dtype))
        name = cfg.model
        # freshly loaded on CPU: use the GPU when there is one
        model.to(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    else:
        if tokenizer is None:
            raise ValueError("pass tokenizer= with an already loaded model")
        name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)
        if cfg.device is not None:
            model.to(cfg.device)
    stats = collect_token_stats(model, tokenizer, cfg.data, n=n, batch_size=cfg.batch_size,
                                max_length=cfg.max_length, template=cfg.template, seed=cfg.seed, gates=cfg.gates,
                                log=log, progress=cfg.progress, skip_invalid=cfg.skip_invalid)
    stats["meta"]["model"] = name
    summary = {"model": name, "data": str(cfg.data), "examples": stats["meta"]["examples"],
               "skipped": stats["meta"]["skipped"], "n": n, "seed": cfg.seed, "max_length": cfg.max_length}
    summary.update(summarize_token_stats(stats))
    if cfg.out is not None:
        write_probe(summary, stats, cfg.out)
    return summary
