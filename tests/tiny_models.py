"""Tiny randomly initialised HF causal LMs and a tiny tokenizer for fast tests.

Everything is built in the test from a config: no download and no optional package (the
embedded model's package is not needed). ``tiny_model`` gives a model for unit tests of the
engine; ``build_tiny_tokenizer`` a byte-level BPE tokenizer (lossless on any text, a ChatML chat
template like SmolLM2's); ``save_tiny_model_dir`` an HF directory (model + tokenizer) that
``deft train``/``eval``/``probe`` load like any local model; the fixtures ``tiny_tokenizer`` and
``tiny_model_dir`` wrap them for a test session.
"""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers import GemmaConfig, LlamaConfig, MistralConfig, MixtralConfig, Qwen2Config

COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def tiny_config(arch="llama", **overrides):
    kw = dict(COMMON, **overrides)
    if arch == "llama":
        return LlamaConfig(**kw)
    if arch == "qwen2":
        return Qwen2Config(**kw)
    if arch == "mistral":
        return MistralConfig(**kw)
    if arch == "gemma":
        return GemmaConfig(head_dim=8, **kw)
    if arch == "mixtral":  # a mixture of experts: 4 experts, 2 per token
        return MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **kw)
    raise ValueError(arch)


def tiny_model(arch="llama", seed=0, **overrides):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, **overrides), attn_implementation="sdpa")
    return model.float()


# --- a tokenizer built in the test -----------------------------------------------------------------
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>")

# ChatML, as SmolLM2-Instruct's template (without its default system prompt)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# merges of frequent byte pairs (runs of spaces and of '#', as in FigFont art; newlines), so
# sequences stay short; every other text falls back to single bytes, so nothing is ever unknown
_MERGES = [("Ġ", "Ġ"), ("ĠĠ", "ĠĠ"), ("ĠĠĠĠ", "ĠĠĠĠ"), ("#", "#"), ("##", "##"), ("Ċ", "Ċ"), ("_", "_"),
           ("t", "h"), ("e", "r"), ("i", "n"), ("a", "n"), ("o", "n")]


def build_tiny_tokenizer():
    """A byte-level BPE ``PreTrainedTokenizerFast`` over a fixed vocabulary: the 256 byte symbols,
    a few merges and the ChatML specials (BOS ``<|im_start|>``, EOS ``<|im_end|>``, pad ``<pad>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for a, b in _MERGES:
        vocab.setdefault(a + b, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=list(_MERGES)))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>",
        chat_template=CHAT_TEMPLATE, model_max_length=2048, clean_up_tokenization_spaces=False,
    )


def save_tiny_model_dir(path, tokenizer=None, seed=0, **overrides) -> Path:
    """Save a tiny random Llama and its tokenizer as an HF directory at ``path``; returns it."""
    from transformers import LlamaForCausalLM

    tokenizer = tokenizer or build_tiny_tokenizer()
    path = Path(path)
    torch.manual_seed(seed)
    settings = dict(COMMON, vocab_size=len(tokenizer), max_position_embeddings=512, tie_word_embeddings=True,
                    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id)
    config = LlamaConfig(**{**settings, **overrides})
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny byte-level tokenizer (built once per session)."""
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny random Llama with the tiny tokenizer, saved as an HF directory."""
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny_llama"), tiny_tokenizer)
