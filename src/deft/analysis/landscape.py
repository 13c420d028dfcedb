"""The gradient landscape (paper Figure 2): real tokens placed by target probability ``p`` (x, log)
and entropy (y), coloured by the normalised gradient magnitude each objective gives them.

The magnitude is the learning signal on the target logit, ``W = s (1 - p)`` (paper Eq. 7), where
``s`` is the objective's gate in ``dL/dz_y = -s (1 - p)``, normalised per objective by its
largest value over the tokens shown (so every panel spans [0, 1]).

Where each gate comes from — always from the objective's own implementation:

* a gate recorded per token at collection time (``gate/<spec>`` in the token statistics,
  :func:`deft.analysis.token_stats.collect_token_stats`): the objective was run by the fused loss
  on the model's real rows. This is the only way for gates that depend on the whole distribution
  (``deft``: ``p^(Σ P²)``; ``eaft``: the top-20 entropy), and ``deft probe`` records both by default;
* otherwise, for objectives whose gate is a function of ``p`` alone (``nll``, ``p``, ``dft``,
  ``power``, ``cayley``, ``profit``, ...; detected by checking that two synthetic rows with the same
  ``p`` but differently shaped non-target mass get the same gate), :func:`deft.token_loss` is run
  on synthetic two-token rows with the tokens' real ``p``. ``cayley_floor``'s batch floor is then
  the mean ``p`` of all the tokens shown.

Objectives that are neither (not recorded, distribution-dependent) are reported as skipped.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Optional

import torch

__all__ = ["PAPER_OBJECTIVES", "gate_depends_on_p_only", "token_gates", "landscape", "plot_landscape"]

PAPER_OBJECTIVES = ("nll", "p", "eaft", "cayley", "deft")


@lru_cache(maxsize=None)
def gate_depends_on_p_only(spec: str) -> bool:
    """True when the objective's gate is the same for a ``flat`` and a ``peaked`` non-target
    distribution at every ``p`` of a grid (:func:`deft.analysis.curves.gate_curves`)."""
    from ..objectives import parse_objective
    from .curves import gate_curves

    obj = parse_objective(spec)
    if obj.kind != "gate" or obj.needs - {"batch"}:
        return False
    grid = torch.logspace(-6, 0, 25)[:-1]
    flat = gate_curves([spec], grid, vocab_size=64, shape="flat")[obj.spec]["gate"]
    peaked = gate_curves([spec], grid, vocab_size=64, shape="peaked")[obj.spec]["gate"]
    return bool(torch.allclose(flat, peaked, rtol=1e-4, atol=1e-6))


def token_gates(stats: Mapping, spec: str) -> Optional[torch.Tensor]:
    """Gate ``s`` ``[N]`` of objective ``spec`` on the tokens of ``stats`` (see the module
    docstring for the source), or ``None`` when it cannot be obtained from these statistics."""
    from ..fused import token_loss
    from ..objectives import parse_objective
    from .curves import synthetic_logits

    obj = parse_objective(spec)
    for key in (f"gate/{obj.spec}", f"gate/{spec}"):
        if key in stats:
            return stats[key].double()
    if not gate_depends_on_p_only(obj.spec):
        return None
    p = stats["p"].double()
    logits = synthetic_logits(p, 2, "flat")
    labels = torch.zeros(p.numel(), dtype=torch.long)
    with torch.no_grad():
        _, st = token_loss(logits, labels, obj, reduction="none", return_stats=True)
    return st["gate"].double()


def landscape(stats: Mapping, objectives: Iterable[str] = PAPER_OBJECTIVES) -> tuple[dict, dict]:
    """``(panels, skipped)``: ``panels[spec] = {"signal": W [N], "normalised": W / max W [N]}`` for each
    objective whose gate is available, ``skipped[spec]`` = the reason for the others."""
    from ..objectives import parse_objective

    p = stats["p"].double()
    panels, skipped = {}, {}
    for spec in objectives:
        canonical = parse_objective(spec).spec
        gate = token_gates(stats, canonical)
        if gate is None:
            skipped[canonical] = ("its gate depends on the whole distribution and was not recorded; probe with "
                                  f"--gates including {canonical}")
            continue
        signal = gate * (1.0 - p)
        top = float(signal.max()) if signal.numel() else 0.0
        panels[canonical] = {"signal": signal, "normalised": signal / top if top > 0 else torch.zeros_like(signal)}
    return panels, skipped


def _title(spec: str) -> str:
    """``eaft:k=20,gamma=1.0`` -> ``eaft`` when every parameter has its default value."""
    from ..objectives import parse_objective

    obj = parse_objective(spec)
    defaults = {k: p.default for k, p in obj.definition.params.items()}
    return obj.name if obj.mask is None and obj.kwargs == defaults else obj.spec


def _subsample(n: int, max_points: int) -> torch.Tensor:
    if n <= max_points:
        return torch.arange(n)
    g = torch.Generator().manual_seed(0)
    return torch.randperm(n, generator=g)[:max_points].sort().values


def plot_landscape(sets: Mapping[str, Mapping], path, objectives: Iterable[str] = PAPER_OBJECTIVES,
                   max_points: int = 20000) -> tuple[Path, dict]:
    """Figure 2: one row per token-statistics set (``label -> stats``), one column per objective;
    x = ``p`` (log), y = entropy (nats), colour = normalised ``W = s(1-p)``. Returns the PNG path and
    ``{label: {spec: reason}}`` for skipped panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = list(objectives)
    computed = {label: landscape(st, objectives) for label, st in sets.items()}
    specs = []
    for panels, _ in computed.values():
        specs += [s for s in panels if s not in specs]
    if not specs:
        raise ValueError("no objective's gate is available for the landscape plot")
    rows = len(sets)
    fig, axes = plt.subplots(rows, len(specs), figsize=(3.0 * len(specs) + 1.4, 2.7 * rows + 0.8),
                             squeeze=False, sharex=True, sharey="row", layout="constrained")
    scatter = None
    for r, (label, st) in enumerate(sets.items()):
        panels, _ = computed[label]
        keep = _subsample(st["p"].numel(), max_points)
        x = st["p"].double()[keep].clamp_min(1e-10).numpy()
        y = st["entropy"].double()[keep].numpy()
        for c, spec in enumerate(specs):
            ax = axes[r][c]
            if spec not in panels:
                ax.text(0.5, 0.5, "gate not recorded", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            else:
                w = panels[spec]["normalised"][keep]
                order = torch.argsort(w).numpy()  # strongest on top
                scatter = ax.scatter(x[order], y[order], c=w.numpy()[order], s=4, cmap="viridis", vmin=0, vmax=1,
                                     linewidths=0, rasterized=True)
            ax.set_xscale("log")
            if r == 0:
                ax.set_title(_title(spec), fontsize=10)
            if r == rows - 1:
                ax.set_xlabel("target probability p")
            if c == 0:
                ax.set_ylabel(f"{label}\nentropy (nats)", fontsize=9)
            ax.grid(alpha=0.25)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes, shrink=0.9, label="normalised |dL/dz_y| = s(p)(1-p) / max")
    fig.suptitle("Gradient landscape (paper Figure 2): learning signal per token under each objective", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, {label: sk for label, (_, sk) in computed.items() if sk}
