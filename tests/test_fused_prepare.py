"""Tests of deft.fused.prepare: checking the fused loss's inputs and turning them into a
:class:`~deft.fused.context.Plan`: ignored positions dropped, extra inputs routed by their need
(:mod:`deft.objectives.needs`), call-wide statistics computed."""

from deft.fused import auto_chunk_size


def test_auto_chunk_size_bounds():
    assert auto_chunk_size(5, 64, 1000) == 5  # never more rows than tokens
    rows = auto_chunk_size(4096, 576, 49152)
    assert 16 <= rows <= 4096 and rows * 49152 * 4 <= 512 << 20
    rows = auto_chunk_size(100000, 1536, 151936)
    assert rows * 151936 * 4 <= 512 << 20
