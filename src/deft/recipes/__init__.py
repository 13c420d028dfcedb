"""Recipes: workflows that combine the layers (load models, train, evaluate, write results).

* :mod:`deft.recipes.compare` — one run per objective (and seed), evaluated, as a paper-style
  table with intervals; results that know their inputs (hashes decide what is redone); validation
  of every run before the first model loads; :mod:`deft.recipes.jobs` keeps its bookkeeping (what
  each result folder was computed from). :mod:`deft.recipes.grid` — models x datasets.
* :mod:`deft.recipes.measure` — held-out learning and forgetting measurements of a comparison.
* :mod:`deft.recipes.token_stats` — per-token statistics of a model on a record file, from the
  patched training forward. :mod:`deft.recipes.probe` — ``deft probe``.
* :mod:`deft.recipes.demo` — the main job of ``make demo``.
* :mod:`deft.recipes.paper_protocol`, :mod:`deft.recipes.paper_run` and :mod:`deft.recipes.paper_tables` —
  one cell of the paper's Tables 1-3 with the reference's presets, and the published tables as data.

:mod:`deft.analysis` keeps the pure functions over saved data that these recipes write.
"""
