"""Token-level objectives: pure per-token math, one file per family, a registry by name.

* :mod:`.deformed_log` — ``nll``, ``p``, ``dft``, ``power``, ``cayley``, ``cayley_floor``, ``deft``
* :mod:`.weighted` — ``eaft``, ``profit``, ``psft``
* :mod:`.distribution` — ``label_smoothing``, ``sft_kl``, ``asft``, ``gem``, ``kd``, ``kd_hybrid``,
  ``target_sft``

Any gate objective can be wrapped by a probability mask: ``nll[p>=0.1]``.
"""

from . import deformed_log, weighted, distribution  # noqa: F401,I001  (registration order = listing order)
from .base import Dists, Objective, ObjectiveDef, Param, Target, Terms, Tokens, deformed_log_loss
from .deformed_log import cayley_focus
from .registry import REGISTRY, list_objectives, objective_names, parse_objective, register

__all__ = [
    "Dists", "Objective", "ObjectiveDef", "Param", "Target", "Terms", "Tokens", "REGISTRY", "cayley_focus",
    "deformed_log_loss", "list_objectives", "objective_names", "parse_objective", "register",
]
