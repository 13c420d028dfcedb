"""Helpers shared by test_data_paper.py, test_data_readers.py, test_data_templates.py and
test_data_validate.py."""

from __future__ import annotations

import json
import string

import pytest
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from deft.data import DataError, validate_source


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _problems(path, **kw):
    with pytest.raises(DataError) as info:
        validate_source(str(path), **kw)
    assert "\n" not in str(info.value)
    return info.value.problems


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
