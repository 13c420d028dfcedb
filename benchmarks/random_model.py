#!/usr/bin/env python
"""Write a randomly initialised causal LM of a known size as a local model directory (no download).

For ``train_step.py --model DIR`` on a GPU: the weights are drawn from the architecture's own
initialisation (seed 0) and saved as safetensors with a tokenizer (by default the embedded
SmolLM2 tokenizer; its ids fit any larger vocabulary). Sizes:

* ``qwen1.5b``: Qwen2.5-1.5B's architecture (H=1536, 28 layers, 12 heads / 2 KV heads, MLP 8960,
  V=151936, tied embeddings), 1.54 B parameters;
* ``tiny``: the same architecture with H=64, 2 layers, V=49152 (the tokenizer's), for dry runs.

    python benchmarks/random_model.py --size qwen1.5b --out /tmp/qwen1.5b-random [--tokenizer DIR] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {
    "qwen1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                     num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                     tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=49152, max_position_embeddings=2048, rope_theta=1e4,
                 tie_word_embeddings=True),
}


def write_model(size: str, out: Path, tokenizer: str | None, device: str, dtype: str) -> int:
    """Save a random ``size`` model and the tokenizer to ``out``; return the parameter count."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    sys.path.insert(0, str(ROOT / "src"))
    if tokenizer:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    else:
        from deft.model.loading import load_tokenizer

        tok = load_tokenizer("smollm2-135m")
    config = Qwen2Config(**SIZES[size], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    if len(tok) > config.vocab_size:
        raise SystemExit(f"the tokenizer has {len(tok)} tokens, more than the {size} vocabulary ({config.vocab_size})")
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return sum(p.numel() for p in model.parameters())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="qwen1.5b", choices=sorted(SIZES))
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the embedded SmolLM2 tokenizer)")
    ap.add_argument("--device", default="cpu", help="where to draw the weights (cuda is faster for large sizes)")
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"], help="dtype of the saved weights")
    args = ap.parse_args(argv)
    count = write_model(args.size, Path(args.out), args.tokenizer, args.device, args.dtype)
    print(f"wrote a random {args.size} model ({count / 1e6:.1f} M parameters) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
