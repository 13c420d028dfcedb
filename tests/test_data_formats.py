"""One record reader for every format people have: TRL prompt/completion (plain and conversational),
messages, Alpaca, ShareGPT; JSONL, JSON arrays, Parquet, CSV and save_to_disk directories; ``key_map``;
the same located one-line errors everywhere (``FILE:LINE`` or ``FILE: record N``), non-UTF-8 and BOMs."""

import string

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>", "<｜begin▁of▁sentence｜>"]


def tiny_tokenizer():
    """A character-level tokenizer built here (no download): every printable ASCII character is one
    token, the paper's special tokens are single special tokens, ``</s>`` is EOS."""
    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate(sorted(set(string.printable)))}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>", bos_token="<s>",
                                  pad_token="<pad>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    return tok
