"""deft's objectives in a plain Hugging Face ``Trainer``.

Two ways, by how much of the model you hand over:

* **Keep your model as it is**: ``Trainer(..., compute_loss_func=compute_loss_func("deft"))``.
  The model's own forward produces the logits ``[B, T, V]``; the objective is computed from them
  by :func:`deft.token_loss` (fp32 math, exact gradients). Simple, but the logits exist, as with
  the model's own NLL.
* **Fused, no logits**: patch the model with :func:`deft.model.fused_forward.patch_fused_loss`
  and train it with :class:`deft.train.trainer.DeftTrainer` (an HF ``Trainer`` subclass that
  normalises the patched forward's summed loss over the step's loss tokens and logs deft's token
  statistics). See ``docs/integrations.md``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..fused import token_loss
from ..objectives import objective_inputs, parse_objective

__all__ = ["compute_loss_func"]


def compute_loss_func(objective="deft", *, ignore_index: int = -100) -> Callable:
    """A ``compute_loss_func`` for ``transformers.Trainer`` training ``objective``.

    The returned ``loss_fn(outputs, labels, num_items_in_batch=None)`` shifts the labels like a
    causal LM (position ``t`` predicts ``labels[t + 1]``) and returns

        ``Σ_t L(z_t, y_{t+1}) / num_items_in_batch``

    where ``L`` is the objective's per-token loss from ``outputs.logits`` ``[B, T, V]`` and
    ``num_items_in_batch`` is what ``Trainer`` passes: the loss tokens of the whole optimizer step
    (all gradient-accumulation micro-batches; all processes with
    ``average_tokens_across_devices``, ``Trainer`` then multiplies by the number of processes).
    Without it the micro-batch's own loss tokens are the divisor. A batch without loss tokens gives
    0 with zero gradients.

    Objectives whose inputs come from outside the logits (:func:`deft.objectives.objective_inputs`:
    a reference or teacher model for ``sft_kl``, ``asft``, ``kd``, ...; old-policy log-probabilities
    for ``psft``) are refused here; those that only need an engine statistic (``cayley_floor``'s
    batch mean of p) train as any other: use ``patch_fused_loss`` with
    ``DeftTrainer``, or ``DeftSFTTrainer``.
    """
    obj = parse_objective(objective)
    outside = [need.name for need in objective_inputs(obj)]  # engine statistics come from the logits themselves
    if outside:
        raise ValueError(f"objective '{obj.spec}' needs {', '.join(outside)}, which a compute_loss_func "
                         "cannot get from the model outputs; use deft.model.fused_forward.patch_fused_loss with "
                         "deft.train.trainer.DeftTrainer (or deft.integrations.trl.DeftSFTTrainer)")

    def loss_fn(outputs, labels: torch.Tensor, num_items_in_batch: Optional[torch.Tensor] = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if labels is None:
            raise ValueError("compute_loss_func needs 'labels' in the batch (-100 where there is no loss)")
        shift_labels = labels[..., 1:].to(logits.device)
        loss = token_loss(logits[..., :-1, :], shift_labels, obj, ignore_index=ignore_index, reduction="sum")
        if num_items_in_batch is None:
            count = (shift_labels != ignore_index).sum()
        else:
            count = torch.as_tensor(num_items_in_batch, device=loss.device)
        return loss / count.to(loss.dtype).clamp(min=1)

    loss_fn.objective = obj  # what it trains, for logs and tests
    return loss_fn
