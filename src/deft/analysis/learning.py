"""Token learning and forgetting between two checkpoints (paper Figure 1).

Given the token statistics of the same records under two models (``before``: e.g. the base model
or step 0; ``after``: a later checkpoint), every token gets

* ``Δp = p_after - p_before`` and ``ΔL = L_after - L_before`` with ``L = -log p``;
* **learned** if ``Δp > threshold`` (default :data:`DEFAULT_THRESHOLD` = 0.01, one percentage
  point), **forgotten** if ``Δp < -threshold``, **unchanged** otherwise;
* **high confidence** if ``p_before >= 0.5`` (:data:`HIGH_CONFIDENCE`), low confidence otherwise.

Figure 1's scatter puts ``Δp`` on x and ``ΔL`` on y: forgotten tokens lie in the upper-left
quadrant (Q2), learned tokens in the lower-right one (Q4). Its bars show the shares of learned and
forgotten tokens and of each split by confidence (hatched: high confidence). All shares here are
fractions of all tokens, so ``learned = learned_high + learned_low``.

:func:`class_metrics` splits held-out tokens into ``content`` and ``end`` (end-of-turn / template)
tokens (:mod:`deft.eval.heldout` says which is which) and gives each class its NLL and mean
target probability, and the content tokens their learned / forgotten shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

__all__ = ["DEFAULT_THRESHOLD", "HIGH_CONFIDENCE", "TOKEN_CLASSES", "token_changes", "learning_shares",
           "probability_summary", "class_metrics", "plot_learning"]

DEFAULT_THRESHOLD = 0.01
HIGH_CONFIDENCE = 0.5
TOKEN_CLASSES = ("content", "end")  # response tokens carrying the answer; end-of-turn / template tokens


def token_changes(before: Mapping, after: Mapping) -> dict:
    """``{"p_before", "dp", "dloss"}`` ``[N]`` for two token-statistics dicts over the same tokens
    (checked by :func:`deft.analysis.token_stats.check_same_tokens`; ``ValueError`` otherwise)."""
    from .token_stats import check_same_tokens

    check_same_tokens(before, after)
    pb, pa = before["p"].double(), after["p"].double()
    lb = before["logp"].double() if "logp" in before else pb.clamp_min(1e-45).log()
    la = after["logp"].double() if "logp" in after else pa.clamp_min(1e-45).log()
    return {"p_before": pb, "dp": pa - pb, "dloss": lb - la}


def learning_shares(p_before: torch.Tensor, p_after: torch.Tensor, threshold: float = DEFAULT_THRESHOLD,
                    high: float = HIGH_CONFIDENCE) -> dict:
    """Shares of all tokens (floats summing as documented in the module docstring):
    ``learned``, ``forgotten``, ``unchanged``, ``learned_high``, ``learned_low``, ``forgotten_high``,
    ``forgotten_low``, plus ``tokens``, ``threshold`` and ``high_confidence``.

    ``p_before``, ``p_after``: ``[N]`` target probabilities of the same tokens."""
    if p_before.shape != p_after.shape:
        raise ValueError(f"p_before and p_after must have the same shape, got {tuple(p_before.shape)} and "
                         f"{tuple(p_after.shape)}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    pb, pa = p_before.double(), p_after.double()
    n = pb.numel()
    dp = pa - pb
    learned, forgotten = dp > threshold, dp < -threshold
    confident = pb >= high

    def share(mask):
        return float(mask.sum()) / n if n else 0.0

    return {
        "tokens": n,
        "threshold": threshold,
        "high_confidence": high,
        "learned": share(learned),
        "forgotten": share(forgotten),
        "unchanged": share(~learned & ~forgotten),
        "learned_high": share(learned & confident),
        "learned_low": share(learned & ~confident),
        "forgotten_high": share(forgotten & confident),
        "forgotten_low": share(forgotten & ~confident),
    }


def probability_summary(logp: torch.Tensor) -> dict:
    """``{"nll", "mean_p", "tokens"}`` of target log-probabilities ``logp`` ``[N]``:
    ``nll = mean(-log p)`` (nats per token), ``mean_p = mean(p)``, both ``None`` when ``N = 0``."""
    x = logp.double()
    n = x.numel()
    return {"nll": float(-x.mean()) if n else None, "mean_p": float(x.exp().mean()) if n else None, "tokens": n}


def class_metrics(logp: torch.Tensor, is_end: torch.Tensor, base_logp: torch.Tensor | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Held-out metrics per token class, content first.

    Args:
        logp: ``[N]`` target log-probabilities under the model.
        is_end: ``[N]`` bool, ``True`` for end-of-turn / template tokens, ``False`` for content.
        base_logp: ``[N]`` the same tokens under the base model; adds ``content_learned`` and
            ``content_forgotten`` (:func:`learning_shares` of the content tokens, fractions of
            them; ``None`` without content tokens).

    Returns:
        ``{"content_nll", "content_mean_p", "content_tokens", "end_nll", "end_mean_p", "end_tokens"}``
        (:func:`probability_summary` of each class), plus the shares with ``base_logp``.
    """
    if logp.shape != is_end.shape or (base_logp is not None and base_logp.shape != logp.shape):
        raise ValueError(f"logp, is_end and base_logp must have one shape, got {tuple(logp.shape)}, "
                         f"{tuple(is_end.shape)} and {None if base_logp is None else tuple(base_logp.shape)}")
    is_end = is_end.bool()
    out = {}
    for name, mask in zip(TOKEN_CLASSES, (~is_end, is_end)):
        out.update({f"{name}_{k}": v for k, v in probability_summary(logp[mask]).items()})
    if base_logp is not None:
        content = ~is_end
        shares = learning_shares(base_logp[content].double().exp(), logp[content].double().exp(), threshold)
        some = bool(content.any())
        out["content_learned"] = shares["learned"] if some else None
        out["content_forgotten"] = shares["forgotten"] if some else None
    return out


def plot_learning(before: Mapping, after: Mapping, path, threshold: float = DEFAULT_THRESHOLD,
                  labels: tuple = ("before", "after"), max_points: int = 20000) -> tuple[Path, dict]:
    """Figure 1: scatter of ``Δp`` vs ``ΔL`` and the learned / forgotten bars. Returns the PNG path
    and :func:`learning_shares`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ch = token_changes(before, after)
    shares = learning_shares(before["p"], after["p"], threshold)
    n = ch["dp"].numel()
    keep = torch.arange(n) if n <= max_points else torch.randperm(
        n, generator=torch.Generator().manual_seed(0))[:max_points]
    confident = (ch["p_before"] >= HIGH_CONFIDENCE)[keep]
    dp, dl = ch["dp"][keep], ch["dloss"][keep]

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.2, 1]})
    ax.scatter(dp[~confident].numpy(), dl[~confident].numpy(), s=4, alpha=0.5, color="tab:blue",
               label=f"p_before < {HIGH_CONFIDENCE:g}", rasterized=True)
    ax.scatter(dp[confident].numpy(), dl[confident].numpy(), s=4, alpha=0.5, color="tab:red",
               label=f"p_before >= {HIGH_CONFIDENCE:g}", rasterized=True)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("ΔP (change in target probability)")
    ax.set_ylabel("ΔL (change in -log p)")
    ax.set_title(f"{labels[0]} → {labels[1]}: Q2 forgotten, Q4 learned", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.25)

    names = ["Learn", "Forg", "Forg\nhigh", "Forg\nlow", "Learn\nhigh", "Learn\nlow"]
    keys = ["learned", "forgotten", "forgotten_high", "forgotten_low", "learned_high", "learned_low"]
    colors = ["tab:green", "tab:orange", "tab:orange", "tab:orange", "tab:green", "tab:green"]
    hatches = ["", "", "//", "", "//", ""]
    values = [shares[k] * 100 for k in keys]
    bars = bx.bar(names, values, color=colors, edgecolor="black", hatch=None)
    for bar, hatch in zip(bars, hatches):
        bar.set_hatch(hatch)
    for bar, v in zip(bars, values):
        bx.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    bx.set_ylabel("% of tokens")
    bx.set_title(f"learned / forgotten (|ΔP| > {threshold:g}); hatched: p_before >= {HIGH_CONFIDENCE:g}", fontsize=10)
    bx.grid(alpha=0.25, axis="y")
    fig.suptitle("Token-wise learning and forgetting (paper Figure 1)", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, shares
