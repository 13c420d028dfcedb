"""Theory curves: gate ``s(p)`` and learning signal ``W(p) = s(p)(1 - p)`` (paper Eq. 7).

The curves are computed by running each objective's own implementation
(:func:`deft.token_loss` with ``return_stats=True``) on synthetic rows whose target probability
is ``p``; no formula is duplicated here. Objectives whose gate depends on the whole
distribution (``deft``, ``eaft``) are evaluated for two shapes of the non-target mass:
``flat`` (spread evenly over the other ``V - 1`` tokens) and ``peaked`` (all of it on one
alternative token, the "confident conflict" shape).

:class:`CurvesConfig` holds the options of ``deft curves`` and :func:`write_curves` does its work;
torch and the objectives load on first use, so that ``deft curves --help`` stays fast.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from ..config import option

if TYPE_CHECKING:
    import torch

__all__ = ["CurvesConfig", "synthetic_logits", "gate_curves", "write_curves_csv", "plot_curves",
           "default_curve_objectives", "all_curves", "write_curves"]

SHAPES = ("flat", "peaked")


def _at_least_two(v: int) -> Optional[str]:
    return None if v >= 2 else "must be at least 2"


@dataclass
class CurvesConfig:
    """Every option of ``deft curves`` (:func:`write_curves`)."""

    COMMAND = "curves"
    objectives: list[str] = option([], "comma-separated objective specs (default: every objective that needs no "
                                   "reference, teacher or old policy)", split="specs")
    vocab_size: int = option(1024, "vocabulary size of the synthetic rows", check=_at_least_two)
    out: str = option("runs/curves", "output directory")


def synthetic_logits(p: torch.Tensor, vocab_size: int, shape: str = "flat") -> torch.Tensor:
    """Logits ``[len(p), V]`` whose softmax puts ``p`` on token 0 and ``1 - p`` elsewhere:
    evenly over tokens ``1..V-1`` (``flat``) or on token 1 alone (``peaked``, the rest ~0)."""
    import torch

    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    p = p.double().clamp(1e-12, 1 - 1e-12)
    rest = 1.0 - p
    probs = torch.full((p.numel(), vocab_size), 1e-30, dtype=torch.float64)
    probs[:, 0] = p
    if shape == "flat":
        probs[:, 1:] = (rest / (vocab_size - 1)).unsqueeze(-1)
    else:
        probs[:, 1] = rest
    return probs.log().float()


def default_curve_objectives() -> list[str]:
    """Objectives whose gate depends only on the model itself (no reference/teacher/old policy)."""
    from ..objectives import REGISTRY

    return [name for name, d in REGISTRY.items() if not (d.needs - {"batch"})]


def gate_curves(
    objectives: Optional[Iterable[str]] = None,
    p: Optional[torch.Tensor] = None,
    vocab_size: int = 1024,
    shape: str = "flat",
) -> dict[str, dict[str, torch.Tensor]]:
    """``{spec: {"p", "gate", "signal"}}`` for each objective on a grid of target probabilities.

    ``gate`` is ``s`` in ``dL/dz_y = -s (1 - p)`` as reported by the objective's own
    implementation, ``signal`` is ``W = s (1 - p)``.
    """
    import torch

    from ..fused import token_loss
    from ..objectives import parse_objective

    if p is None:
        p = torch.logspace(-4, 0, 161)[:-1]
    logits = synthetic_logits(p, vocab_size, shape)
    labels = torch.zeros(p.numel(), dtype=torch.long)
    out = {}
    for spec in objectives or default_curve_objectives():
        obj = parse_objective(spec)
        _, stats = token_loss(logits, labels, obj, reduction="none", return_stats=True)
        pp = stats["p"].double()
        out[obj.spec] = {"p": pp, "gate": stats["gate"].double(), "signal": stats["gate"].double() * (1 - pp)}
    return out


def write_curves_csv(curves: dict, path: Path) -> None:
    """One row per (objective, p): ``objective, p, gate, signal``."""
    from ..io import atomic_open

    with atomic_open(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["objective", "shape", "p", "gate", "signal"])
        for (spec, shape), c in curves.items():
            for p, s, w in zip(c["p"].tolist(), c["gate"].tolist(), c["signal"].tolist()):
                writer.writerow([spec, shape, f"{p:.6g}", f"{s:.6g}", f"{w:.6g}"])


def plot_curves(curves: dict, path: Path, title: str = "Gate s(p) and learning signal W(p) = s(p)(1-p)") -> None:
    """Two log-x panels (gate, signal); ``curves`` maps ``(spec, shape)`` to :func:`gate_curves` rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    specs = sorted({spec for spec, _ in curves})
    cmap = plt.get_cmap("tab20")
    colors = {spec: cmap(i % 20) for i, spec in enumerate(specs)}
    for (spec, shape), c in curves.items():
        style = "-" if shape == "flat" else "--"
        label = spec if shape == "flat" else f"{spec} ({shape})"
        for ax, key in zip(axes, ("gate", "signal")):
            ax.plot(c["p"].numpy(), c[key].numpy(), style, color=colors[spec], label=label, lw=1.6)
    for ax, name in zip(axes, ("gate s(p)", "learning signal W(p) = s(p)(1-p)")):
        ax.set_xscale("log")
        ax.set_xlabel("target probability p")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, loc="upper left")
    fig.suptitle(title + "\n(dashed: all non-target mass on one alternative token)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def all_curves(objectives=None, vocab_size: int = 1024) -> dict:
    """Curves for every objective with the ``flat`` shape, plus ``peaked`` for the objectives
    whose gate depends on the distribution's shape."""
    import torch

    curves = {}
    for shape in SHAPES:
        for spec, c in gate_curves(objectives, vocab_size=vocab_size, shape=shape).items():
            curves[(spec, shape)] = c
    flat = {spec: c for (spec, shape), c in curves.items() if shape == "flat"}
    for (spec, shape) in list(curves):
        if shape == "peaked" and torch.allclose(curves[(spec, shape)]["gate"], flat[spec]["gate"], atol=1e-4):
            del curves[(spec, shape)]
    return curves




def write_curves(cfg: CurvesConfig, log=print) -> dict:
    """``cfg.out``/curves.png and curves.csv with the curves of ``cfg.objectives`` (:func:`all_curves`);
    returns the curves."""
    curves = all_curves(cfg.objectives or None, vocab_size=cfg.vocab_size)
    out = Path(cfg.out)
    write_curves_csv(curves, out / "curves.csv")
    plot_curves(curves, out / "curves.png")
    log(f"wrote {out / 'curves.png'} and {out / 'curves.csv'} ({len(curves)} curves)")
    return curves
