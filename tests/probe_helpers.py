"""Helpers shared by test_analysis_token_stats.py and test_recipes_token_stats.py."""

from __future__ import annotations

import pytest

from deft.recipes.token_stats import collect_token_stats


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from deft.model import load_model, load_tokenizer

    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def stats(tiny, figfont_records):
    model, tok = tiny
    return collect_token_stats(model, tok, figfont_records, n=5, batch_size=2, seed=1)
