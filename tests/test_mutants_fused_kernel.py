"""The fused engine's compiled kernel path at its borders.

Written to kill mutants of src/deft/fused/kernel.py that survived ``make mutate`` (docs/testing.md).
Expected values come from the unfused reference (``deft.token_loss`` on full logits), numpy
anchors or hand computations.
"""
