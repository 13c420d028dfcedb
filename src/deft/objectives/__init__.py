"""Token-level objectives: pure per-token math, one file per family, a registry by name.

* :mod:`.deformed_log` — ``nll``, ``p``, ``dft``, ``power``, ``cayley``, ``cayley_floor``, ``deft``
* :mod:`.weighted` — ``eaft``, ``profit``, ``psft``
* :mod:`.distribution` — ``label_smoothing``, ``sft_kl``, ``asft``, ``gem``, ``kd``, ``kd_hybrid``,
  ``target_sft``

Any gate objective can be wrapped by a probability mask: ``nll[p>=0.1]`` (the mean divides by all
loss tokens); the reference names ``OnlyTopP-0.1`` etc. divide by the selected tokens instead.
What an objective needs besides the logits is typed in :mod:`.needs` (:data:`NEEDS`);
:func:`objective_inputs` lists the inputs an objective must be given.
"""

from . import deformed_log, weighted, distribution  # noqa: F401,I001  (registration order = listing order)
from .base import (
    CrossEntropyTargets, Dists, Objective, ObjectiveDef, Param, PerTokenLoss, Target, Terms, Tokens, deformed_log_loss,
)
from .deformed_log import cayley_focus
from .needs import NEEDS, Need, register_need
from .registry import (
    MASKS_HELP, REGISTRY, describe_mask, list_objectives, objective_inputs, objective_names, parse_objective, register,
)

__all__ = [
    "CrossEntropyTargets", "Dists", "MASKS_HELP", "NEEDS", "Need", "Objective", "ObjectiveDef", "Param", "PerTokenLoss",
    "REGISTRY", "Target", "Terms", "Tokens", "cayley_focus", "deformed_log_loss", "describe_mask", "list_objectives",
    "objective_inputs", "objective_names", "parse_objective", "register", "register_need",
]
