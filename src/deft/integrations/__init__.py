"""deft inside other trainers.

* :mod:`deft.integrations.trl` — ``DeftSFTConfig`` / ``DeftSFTTrainer``: TRL's ``SFTTrainer`` with
  any deft objective through the fused engine (needs ``pip install 'deft-sft[trl]'``).
* :mod:`deft.integrations.hf` — ``compute_loss_func(objective)`` for a plain ``transformers.Trainer``.

Import the submodule you need; this package imports neither TRL nor torch by itself.
"""

__all__ = ["hf", "trl"]
