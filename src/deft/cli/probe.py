"""``deft probe``: the model's prior on the response tokens of a data file, and its regime."""

from __future__ import annotations

from ..analysis.probe import CONFLICT_ENTROPY, CONFLICT_P, STRONG_FOCUS, WEAK_FOCUS
from ..config import add_config_flags, config_from_args
from ..recipes.probe import ProbeConfig

__all__ = ["ProbeConfig", "add_parser", "run"]  # ProbeConfig lives in deft.recipes.probe


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
    """Parse :class:`ProbeConfig` and call :func:`deft.recipes.probe.probe`; print its summary."""
    import json

    from ..analysis.probe import format_summary
    from ..recipes.probe import probe

    cfg = config_from_args(ProbeConfig, args)
    summary = probe(cfg)
    print(json.dumps(summary, indent=1) if cfg.json else format_summary(summary))
    if cfg.out:
        print(f"wrote {cfg.out}/probe.json and {cfg.out}/token_stats.npz; next: 'deft plot --probes {cfg.out}'")
    return 0
