"""Loss engines: the plain full-logits oracle (:func:`token_loss`) and the fused chunked
engine (:func:`fused_token_loss`) that never holds the ``[N, V]`` logits."""

from .chunked import auto_chunk_size, fused_token_loss, sub_block_rows
from .plain import token_loss

__all__ = ["auto_chunk_size", "fused_token_loss", "sub_block_rows", "token_loss"]
