"""Loss engines: the plain full-logits oracle (:func:`token_loss`) and the fused chunked
engine (:func:`fused_token_loss`) that never holds the ``[N, V]`` logits.

Modules: :mod:`.chunked` (the public function, the chunk loop, the autograd Functions; its
docstring has the call tree), :mod:`.prepare` (checks, the plan), :mod:`.context` (the per-chunk
context and buffers), one per objective kind (:mod:`.gate`, :mod:`.target`, :mod:`.autodiff`,
with :mod:`.frozen` for sub-blocks and frozen models), :mod:`.compiled` (the gate step's
implementations, ``impl=``), :mod:`.plain` and :mod:`.common`.
"""

from .chunked import auto_chunk_size, fused_token_loss, sub_block_rows
from .compiled import IMPLS
from .plain import token_loss

__all__ = ["IMPLS", "auto_chunk_size", "fused_token_loss", "sub_block_rows", "token_loss"]
