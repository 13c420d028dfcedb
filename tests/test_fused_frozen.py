"""Tests of deft.fused.frozen: distribution and autograd objectives on one chunk: row sub-blocks and
the frozen models' log-probabilities."""

import pytest

from deft.fused import sub_block_rows
from deft.objectives import REGISTRY

from fused_chunked_helpers import ALL, assert_sub_blocks_match_plain

DISTRIBUTION = [name for name in ALL if REGISTRY[name].kind == "distribution"]


@pytest.mark.parametrize("name", DISTRIBUTION)
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_distribution_sub_blocks_equal_the_plain_path(name, reduction):
    """A chunk of 90 rows is differentiated in 16-row sub-blocks with a partial last one;
    losses, gradients and statistics are those of the plain path."""
    assert sub_block_rows(90) == 16 and sub_block_rows(7) == 7 and sub_block_rows(4096) == 256
    assert_sub_blocks_match_plain(name, reduction, seed=11)
