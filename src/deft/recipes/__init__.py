"""Recipes: workflows that combine the layers (load models, train, evaluate, write results).

* :mod:`deft.recipes.compare` — one run per objective (and seed), evaluated, as a paper-style
  table; grids of comparisons; results that know their inputs (hashes).
* :mod:`deft.recipes.token_stats` — per-token statistics of a model on a record file.
* :mod:`deft.recipes.probe` — the probe of ``deft probe``.
* :mod:`deft.recipes.demo` — the main job of ``make demo``.

:mod:`deft.analysis` keeps the pure functions over saved data that these recipes write.
"""
