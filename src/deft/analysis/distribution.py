"""Token-probability distributions on the training set (paper Figures 3, 4 and 6).

The paper compares, per regime, the distribution of the target probability ``p`` over the
training-set tokens after training with each objective: NLL leaves a heavy low-``p`` tail in the
model-strong regime, ``-p`` fails to move the mass up in the model-weak one, DEFT pushes more
tokens above ``p > 0.5`` while keeping the ``p < 10⁻³`` tail small. Here each token-statistics set
(the base model and each trained model probed on the same records) is one overlaid density of
``log10 p``, with the shares of tokens below ``10⁻³`` and above 0.5 in the legend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

__all__ = ["LOG10_RANGE", "log10_p_histogram", "plot_distributions"]

LOG10_RANGE = (-8.0, 0.0)


def log10_p_histogram(p: torch.Tensor, bins: int = 64, lo: float = LOG10_RANGE[0]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edges [bins+1], density [bins])`` of ``log10 p`` on ``[lo, 0]``; tokens below ``10^lo``
    are counted in the first bin. The density integrates to 1 over ``log10 p``."""
    x = p.double().clamp_min(10.0 ** lo).log10().clamp(lo, 0.0)
    edges = torch.linspace(lo, 0.0, bins + 1, dtype=torch.float64)
    counts = torch.histc(x, bins=bins, min=lo, max=0.0)
    width = (0.0 - lo) / bins
    density = counts / max(x.numel(), 1) / width
    return edges, density


def plot_distributions(sets: Mapping[str, Mapping], path, bins: int = 64,
                       title: str = ("Token probability distribution on the training set "
                                     "(paper Figures 3, 4, 6)")) -> Path:
    """Overlay the ``log10 p`` densities of several token-statistics sets (``label -> stats``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not sets:
        raise ValueError("no token statistics to plot")
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for label, st in sets.items():
        p = st["p"].double()
        edges, density = log10_p_histogram(p, bins)
        low = float((p < 1e-3).double().mean())
        high = float((p > 0.5).double().mean())
        ax.stairs(density.numpy(), edges.numpy(), lw=1.6,
                  label=f"{label}  (mean p {float(p.mean()):.3g}; p<1e-3 {low:.1%}; p>0.5 {high:.1%})")
    ax.axvline(-3, color="grey", ls=":", lw=1)
    ax.axvline(torch.log10(torch.tensor(0.5)).item(), color="grey", ls=":", lw=1)
    ax.set_xlabel("log10 target probability p")
    ax.set_ylabel("density of tokens")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
