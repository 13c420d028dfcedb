"""The paper's math answer extraction and equivalence (``--protocol paper``) at their borders.

Written to kill mutants of src/deft/eval/scorers_paper_math.py that survived ``make mutate``
(docs/testing.md). Expected values come from the documented rules of the reference evaluation
(the module docstring) and hand computations in the comments.
"""
