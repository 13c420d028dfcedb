"""Model loading: the embedded default (``smollm2-135m``), GGUF files, local HF directories and hub
ids, with a cache of converted GGUF models (see :mod:`deft.model.loading`)."""

from .loading import (
    EMBEDDED_MODELS,
    ResolvedModel,
    cache_root,
    hub_reachable,
    load_model,
    load_tokenizer,
    materialize,
    resolve_model,
)

__all__ = [
    "EMBEDDED_MODELS",
    "ResolvedModel",
    "cache_root",
    "hub_reachable",
    "load_model",
    "load_tokenizer",
    "materialize",
    "resolve_model",
]
