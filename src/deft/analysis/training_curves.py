"""Focus and target probability over training steps (the paper's Figure 5), from ``metrics.jsonl``.

Figure 5 of the paper tracks the DEFT focus index ``Σ_v P_v²`` and the mean target probability
during training: in the model-strong regime the focus starts near 0.65, in the model-weak
(FigFont) regime near 0.05 and rises as the model learns the task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

__all__ = ["read_metrics", "plot_training_curves", "CURVE_KEYS"]

CURVE_KEYS = (
    ("loss", "loss (objective value)"),
    ("mean_p", "mean target probability p"),
    ("mean_focus", "mean focus index a"),
    ("mean_entropy", "mean entropy (nats)"),
    ("frac_p_below_1e-3", "share of tokens with p < 1e-3"),
    ("mean_gate", "mean gate s"),
)


def read_metrics(path) -> list[dict]:
    """The per-step rows of a run's ``metrics.jsonl`` (a run directory or the file itself);
    evaluation rows (without ``mean_p``) are skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.jsonl (is this a 'deft train' output directory?)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{n}: not a JSON line") from None
        if "step" in row and "loss" in row:
            rows.append(row)
    return rows


def plot_training_curves(runs: Mapping[str, object], path, title: str = "Token statistics during training") -> Path:
    """One panel per statistic of :data:`CURVE_KEYS`, one line per run (``name -> run dir``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {name: read_metrics(run) for name, run in runs.items()}
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    colors = {name: f"C{i % 10}" for i, name in enumerate(data)}  # one colour per run in every panel
    for ax, (key, label) in zip(axes.flat, CURVE_KEYS):
        for name, rows in data.items():
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), label=name, lw=1.6, color=colors[name])
        ax.set_xlabel("optimizer step")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colors[name], lw=1.6, label=name) for name in data]
    axes.flat[0].legend(handles=handles, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
