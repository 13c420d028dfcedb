"""Tiny randomly initialised HF causal LMs for fast unit tests (built from a config, no download)."""

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
