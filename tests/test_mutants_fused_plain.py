"""The fused engine's plain and target-only paths at their borders.

Written to kill mutants of src/deft/fused/plain.py and src/deft/fused/target.py that survived
``make mutate`` (docs/testing.md). Expected values come from the unfused reference
(``deft.token_loss`` on full logits), numpy anchors or hand computations.
"""
