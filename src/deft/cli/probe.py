"""``deft probe``: the model's prior on the response tokens of a data file, and its regime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..analysis.probe import CONFLICT_ENTROPY, CONFLICT_P, STRONG_FOCUS, WEAK_FOCUS
from ..config import add_config_flags, config_from_args, option


@dataclass
class ProbeConfig:
    """Every option of ``deft probe``."""

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
    gates: str = option("deft,eaft", "comma-separated objectives whose per-token gate is stored for the "
                        "gradient-landscape plot (one extra forward pass each after the first; 'none' for none)")
    out: Optional[str] = option(None, "folder for probe.json and token_stats.npz (default: print only)",
                                aliases=("output_dir",))
    json: bool = option(False, "print the probe.json content instead of the text summary")
    progress: bool = option(True, "show a progress bar with the time left")
    skip_invalid: bool = option(False, "leave invalid records out (counted) instead of stopping at the first one")

    def validate(self) -> "ProbeConfig":
        from ..config import ConfigError, check_device

        if not self.data:
            raise ConfigError("pass --data FILE (records written by 'deft data')")
        check_device(self.device)
        return self


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "probe",
        description="Run the model once over N records of a data file (response tokens only, as 'deft train' "
                    "sees them) and report its prior: mean target probability p, mean DEFT focus (sum of squared "
                    "probabilities, paper Eq. 20), the Cayley focus of the mean p (Eq. 17), a histogram of p, "
                    "the mean entropy, the share of confident conflicts and a regime verdict with recommended "
                    "objectives.",
        epilog=f"Regimes: model-strong if mean focus >= {STRONG_FOCUS:g}, model-weak if < {WEAK_FOCUS:g}, else "
               "intermediate (paper Figure 5: the focus starts near 0.65 model-strong and 0.05 model-weak); one "
               "level lower when mean p is under half the mean focus. Confident conflicts: "
               f"p < {CONFLICT_P:g} and entropy < {CONFLICT_ENTROPY:g} nat. With --out, DIR/probe.json and "
               "DIR/token_stats.npz (per-token statistics for 'deft plot') are written.",
    )
    add_config_flags(p, ProbeConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    import torch

    from ..analysis.probe import format_summary
    from ..recipes.probe import probe

    cfg = config_from_args(ProbeConfig, args)
    gates = [] if cfg.gates.strip().lower() in ("", "none") else [g.strip() for g in cfg.gates.split(",") if g.strip()]
    summary = probe(cfg.model, cfg.data, n=cfg.n or None, batch_size=cfg.batch_size, max_length=cfg.max_length,
                    template=cfg.template, seed=cfg.seed, device=cfg.device, dtype=getattr(torch, cfg.dtype),
                    gates=gates, out=cfg.out, progress=cfg.progress,
                    skip_invalid=cfg.skip_invalid)
    print(json.dumps(summary, indent=1) if cfg.json else format_summary(summary))
    if cfg.out:
        print(f"wrote {cfg.out}/probe.json and {cfg.out}/token_stats.npz; next: 'deft plot --probes {cfg.out}'")
    return 0
