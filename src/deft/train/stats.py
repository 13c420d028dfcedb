"""Per-step token statistics (the paper's Figure 5 comes from these).

For every optimizer step, over all loss tokens of all its micro-batches and all processes:

* ``mean_p`` — mean target probability ``p``;
* ``mean_gate`` — mean gate ``s`` (``dL/dz_y = -s (1 - p)``);
* ``mean_entropy`` — mean entropy of the predictive distribution (nats);
* ``frac_p_below_1e-3`` / ``frac_p_above_0.5`` — share of tokens with ``p < 1e-3`` / ``p > 0.5``;
* ``mean_focus`` — mean focus index ``a`` (power, cayley, cayley_floor, deft only);
* ``loss`` — the loss the step minimised: with ``tokens`` normalisation the objective summed over
  the step's loss tokens divided by their number; with ``micro_batch`` normalisation the mean over
  the step's micro-batches (of every process) of each micro-batch's own mean (over its loss
  tokens, or over its selected tokens for the reference's ``Only*`` objectives).
"""

from __future__ import annotations

import torch

__all__ = ["StepStats", "STAT_NAMES"]

_SUMS = ("loss", "micro_batch_means", "micro_batches", "tokens", "input_tokens", "p", "gate", "entropy", "p_low",
         "p_high", "focus", "focus_tokens")
STAT_NAMES = ("mean_p", "mean_gate", "mean_entropy", "frac_p_below_1e-3", "frac_p_above_0.5", "mean_focus")


class StepStats:
    """Accumulates sums over the micro-batches of one optimizer step."""

    def __init__(self, normalization: str = "tokens"):
        if normalization not in ("tokens", "micro_batch"):
            raise ValueError(f"loss normalization must be tokens or micro_batch, got {normalization!r}")
        self.normalization = normalization
        self.sums = torch.zeros(len(_SUMS), dtype=torch.float64)

    def add(self, loss_sum: torch.Tensor, stats: dict, input_tokens: int) -> None:
        """Add one micro-batch: its summed loss, the per-token stats of the fused loss and the
        number of (non-padding) input tokens."""
        mask = stats["mask"]
        p = stats["p"][mask].double()
        loss = float(loss_sum.detach())
        values = {
            "loss": loss,
            # the micro-batch's own mean divides by the objective's denominator: its loss tokens, or
            # its selected tokens for the reference's Only* objectives (as the update does)
            "micro_batch_means": loss / max(float(stats.get("num_tokens", mask.sum())), 1.0),
            "micro_batches": 1.0,
            "tokens": float(mask.sum()),
            "input_tokens": float(input_tokens),
            "p": float(p.sum()),
            "gate": float(stats["gate"][mask].double().sum()),
            "entropy": float(stats["entropy"][mask].double().sum()),
            "p_low": float((p < 1e-3).sum()),
            "p_high": float((p > 0.5).sum()),
        }
        if "focus" in stats:
            values["focus"] = float(stats["focus"][mask].double().sum())
            values["focus_tokens"] = values["tokens"]
        self.sums += torch.tensor([values.get(k, 0.0) for k in _SUMS], dtype=torch.float64)

    def reduce(self, accelerator=None) -> None:
        """Sum over processes (no-op on one process)."""
        if accelerator is not None and accelerator.num_processes > 1:
            self.sums = accelerator.reduce(self.sums.to(accelerator.device), reduction="sum").cpu()

    def result(self) -> dict:
        """The step's statistics; empty if no token was seen."""
        s = dict(zip(_SUMS, self.sums.tolist()))
        n = s["tokens"]
        if self.normalization == "micro_batch":
            loss = s["micro_batch_means"] / s["micro_batches"] if s["micro_batches"] else 0.0
        else:
            loss = s["loss"] / n if n else 0.0
        out = {"loss": loss, "tokens": int(n), "input_tokens": int(s["input_tokens"])}
        if n:
            out.update({
                "mean_p": s["p"] / n, "mean_gate": s["gate"] / n, "mean_entropy": s["entropy"] / n,
                "frac_p_below_1e-3": s["p_low"] / n, "frac_p_above_0.5": s["p_high"] / n,
            })
            if s["focus_tokens"]:
                out["mean_focus"] = s["focus"] / s["focus_tokens"]
        return out

    def reset(self) -> None:
        """Start the next optimizer step."""
        self.sums.zero_()
