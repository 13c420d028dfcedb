"""deft: supervised fine-tuning with token-level objectives.

Public names:

* :func:`list_objectives` — every objective with a one-line description.
* :func:`parse_objective` — spec string (``"power:alpha=0.5"``) -> bound objective.
* :func:`token_loss` — the loss from logits ``[..., V]`` (plain full-logits path).
* :func:`fused_token_loss` — the loss from hidden states ``[N, H]`` and the LM-head weight
  ``[V, H]``, computed in chunks without holding the ``[N, V]`` logits.
"""

from .fused import fused_token_loss, token_loss
from .objectives import list_objectives, parse_objective

__version__ = "0.1.0"

__all__ = ["fused_token_loss", "list_objectives", "parse_objective", "token_loss", "__version__"]
