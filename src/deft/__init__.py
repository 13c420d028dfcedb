"""deft: supervised fine-tuning with token-level objectives.

Public names:

* :func:`list_objectives` — every objective with a one-line description.
* :func:`parse_objective` — spec string (``"power:alpha=0.5"``) -> bound objective.
* :func:`token_loss` — the loss from logits ``[..., V]`` (plain full-logits path).
* :func:`fused_token_loss` — the loss from hidden states ``[N, H]`` and the LM-head weight
  ``[V, H]``, computed in chunks without holding the ``[N, V]`` logits.
"""

__version__ = "0.1.0"

# torch loads on first use, so that ``deft --help`` and config parsing stay fast
_LAZY = {"fused_token_loss": "fused", "token_loss": "fused", "list_objectives": "objectives",
         "parse_objective": "objectives"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deft' has no attribute {name!r}")

__all__ = ["fused_token_loss", "list_objectives", "parse_objective", "token_loss", "__version__"]
