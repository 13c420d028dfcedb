"""The text scorers (exact match, F1, Jaro-Winkler, choice letters) at their borders.

Written to kill mutants of src/deft/eval/scorers_text.py that survived ``make mutate``
(docs/testing.md). Expected values come from the scorers' documented rules and hand computations.
"""
