"""Tests of deft.recipes.token_stats: collect per-token statistics of a model on the response tokens of
a record file, without training."""

import pytest
import torch

from deft.recipes.token_stats import collect_token_stats, sample_records

from probe_helpers import stats, tiny  # noqa: F401 (fixtures)


def _plain_stats(model, tok, path, n, seed):
    """The same tokens through the plain full-logits path: one padded batch, model logits,
    deft.token_loss on the shifted labels."""
    from deft import token_loss
    from deft.data import RecordTokenizer
    from deft.train.collate import PaddingCollator

    rows = sample_records(path, n, seed)
    view = RecordTokenizer(tok, max_length=1024)
    examples = [view(rec, where) for _, where, rec in rows]
    batch = PaddingCollator(tok.pad_token_id)(examples)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    _, deft_st = token_loss(logits, labels, "deft", return_stats=True)
    _, eaft_st = token_loss(logits, labels, "eaft", return_stats=True)
    keep = deft_st["mask"]
    index = torch.tensor([i for i, _, _ in rows]).unsqueeze(1).expand_as(labels)
    return {"p": deft_st["p"][keep], "entropy": deft_st["entropy"][keep], "focus": deft_st["focus"][keep],
            "gate/deft": deft_st["gate"][keep], "gate/eaft:k=20,gamma=1.0": eaft_st["gate"][keep],
            "token_id": labels[keep], "example": index[keep]}


def test_token_stats_equal_plain_logits_path(tiny, figfont_records, stats):
    model, tok = tiny
    plain = _plain_stats(model, tok, figfont_records, 5, 1)
    assert stats["p"].numel() == plain["p"].numel() > 0
    assert torch.equal(stats["token_id"], plain["token_id"])
    assert torch.equal(stats["example"], plain["example"])
    for key in ("p", "entropy", "focus", "gate/deft", "gate/eaft:k=20,gamma=1.0"):
        torch.testing.assert_close(stats[key], plain[key].float(), rtol=1e-4, atol=1e-6, msg=key)
    torch.testing.assert_close(stats["logp"], plain["p"].float().log(), rtol=1e-5, atol=1e-5)
    assert stats["meta"]["examples"] == 5 and stats["meta"]["tokens"] == stats["p"].numel()


def test_token_stats_reuse_the_patched_forward_and_keep_an_earlier_patch(tiny, figfont_records, stats):
    from deft.model.fused_forward import is_patched, patch_fused_loss, unpatch_fused_loss

    model, tok = tiny
    assert not is_patched(model)  # collecting left the model as it was
    patch_fused_loss(model, "nll")
    try:
        again = collect_token_stats(model, tok, figfont_records, n=5, batch_size=3, seed=1, gates=("eaft",))
        assert is_patched(model) and model._deft_config.objective.spec == "nll"  # the earlier patch is back
    finally:
        unpatch_fused_loss(model)
    torch.testing.assert_close(again["p"], stats["p"], rtol=1e-5, atol=1e-7)  # batch size does not matter
    torch.testing.assert_close(again["gate/eaft:k=20,gamma=1.0"], stats["gate/eaft:k=20,gamma=1.0"])
    assert "gate/deft" not in again


def test_sample_is_deterministic_and_ordered(figfont_records):
    a = [i for i, _, _ in sample_records(figfont_records, 7, seed=4)]
    assert a == [i for i, _, _ in sample_records(figfont_records, 7, seed=4)]
    assert a == sorted(a) and len(set(a)) == 7
    assert a != [i for i, _, _ in sample_records(figfont_records, 7, seed=5)]
    assert len(sample_records(figfont_records, None)) == 64
    with pytest.raises(ValueError):
        sample_records(figfont_records, 0)


def test_a_malformed_record_stops_the_probe_like_training(tmp_path):
    """The same rule as 'deft train': a bad line is named (FILE:LINE), unless --skip-invalid."""
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "no response"}\n{"prompt": "c", "response": "d"}\n')
    with pytest.raises(ValueError, match=rf"{path.name}:2: .*--skip-invalid"):
        sample_records(path)
    kept = sample_records(path, skip_invalid=True)
    assert [i for i, _, _ in kept] == [0, 2]
