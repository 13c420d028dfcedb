"""Tests of deft.train.collate: batches for the trainer: one collator for padded and packed rows."""

import pytest
import torch

from deft.model.fused_forward import patch_fused_loss
from deft.train.collate import Collator, pack_examples
from deft.train.run import build_examples

from train_run_helpers import cfg_for


def test_packing_gives_the_same_loss_as_padding(tiny_model_dir, figfont_records):
    """Packed rows, padded rows and each example on its own give the same summed NLL."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = cfg_for(tiny_model_dir, figfont_records, "/unused")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = list(build_examples(cfg, tok, str(figfont_records), log=lambda *_: None).select(range(6)))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    patch_fused_loss(model, "nll")
    padded = model(**Collator(tok.pad_token_id)(examples))
    rows = pack_examples(examples, 1024)
    assert len(rows) < len(examples)
    batch = Collator(tok.pad_token_id)(rows)
    assert batch["position_ids"][0, 0] == 0 and (batch["position_ids"][0] == 0).sum() > 1
    packed = model(**batch)
    assert packed.num_tokens == padded.num_tokens
    torch.testing.assert_close(packed.loss, padded.loss, rtol=1e-4, atol=1e-4)
    # anchor: each example alone through the unpatched forward (no labels: plain logits) and
    # torch's own cross-entropy on the shifted labels
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            logits = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0, :-1]
            labels = torch.tensor(ex["labels"][1:])
            total += float(torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum"))
            count += int((labels != -100).sum())
    assert padded.num_tokens == count
    assert float(packed.loss) == pytest.approx(total, rel=1e-5)
