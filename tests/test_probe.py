"""deft probe: per-token statistics (fused == plain), probe.json, regime thresholds, CLI."""

import json
import math

import pytest
import torch

from deft.analysis.probe import (
    CONFLICT_ENTROPY, CONFLICT_P, HIST_EDGES, STRONG_FOCUS, WEAK_FOCUS, regime_of, summarize_token_stats,
)
from deft.analysis.token_stats import check_same_tokens, load_token_stats, save_token_stats
from deft.recipes.token_stats import collect_token_stats, sample_records
from deft.cli.main import main


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from deft.model import load_model, load_tokenizer

    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def stats(tiny, figfont_records):
    model, tok = tiny
    return collect_token_stats(model, tok, figfont_records, n=5, batch_size=2, seed=1)


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


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_save_load_round_trip(stats, tmp_path, suffix):
    path = save_token_stats(stats, tmp_path / f"token_stats{suffix}")
    back = load_token_stats(path)
    for key, value in stats.items():
        if key == "meta":
            assert back["meta"]["tokens"] == value["tokens"]
        else:
            assert torch.equal(back[key], value), key
    assert torch.equal(load_token_stats(tmp_path)["p"], stats["p"])  # a directory works too


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_token_stats(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        load_token_stats(tmp_path)
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(ValueError):
        load_token_stats(tmp_path / "bad.npz")


def test_check_same_tokens():
    a = {"p": torch.rand(4), "example": torch.tensor([0, 0, 1, 1]), "token_id": torch.tensor([5, 6, 7, 8])}
    check_same_tokens(a, dict(a))
    with pytest.raises(ValueError, match="has 3"):
        check_same_tokens(a, {k: v[:3] for k, v in a.items()})
    with pytest.raises(ValueError, match="token_id"):
        check_same_tokens(a, {**a, "token_id": torch.tensor([5, 6, 9, 8])})


def test_regime_thresholds_at_boundaries():
    assert (STRONG_FOCUS, WEAK_FOCUS) == (0.45, 0.2)
    assert regime_of(0.65) == "strong" and regime_of(0.05) == "weak"  # the paper's Figure 5 anchors
    assert regime_of(0.45) == "strong"
    assert regime_of(math.nextafter(0.45, 0)) == "intermediate"
    assert regime_of(0.2) == "intermediate"
    assert regime_of(math.nextafter(0.2, 0)) == "weak"
    assert regime_of(1.0) == "strong" and regime_of(0.0) == "weak"
    # mean p lowers the verdict one level when it is under half the mean focus
    assert regime_of(0.65, 0.325) == "strong"
    assert regime_of(0.65, 0.3249) == "intermediate"
    assert regime_of(0.3, 0.15) == "intermediate"
    assert regime_of(0.3, 0.1) == "weak"
    assert regime_of(0.1, 0.0) == "weak"
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            regime_of(bad)
    with pytest.raises(ValueError):
        regime_of(0.5, 2.0)


def test_summary_on_hand_made_tokens():
    p = torch.tensor([0.01, 0.05, 0.5, 0.95, 1e-7, 0.6])
    entropy = torch.tensor([0.5, 2.0, 0.1, 0.3, 0.2, 0.9])
    focus = torch.tensor([0.8, 0.1, 0.5, 0.85, 0.9, 0.4])
    s = summarize_token_stats({"p": p, "entropy": entropy, "focus": focus})
    assert s["tokens"] == 6
    assert s["mean_p"] == pytest.approx(float(p.double().mean()))
    assert s["mean_focus"] == pytest.approx(float(focus.double().mean()))
    # conflicts: p < 0.1 and entropy < 1 nat -> tokens 0 (0.01, 0.5) and 4 (1e-7, 0.2)
    assert (CONFLICT_P, CONFLICT_ENTROPY) == (0.1, 1.0)
    assert s["confident_conflicts"]["count"] == 2 and s["confident_conflicts"]["share"] == pytest.approx(2 / 6)
    m = s["mean_p"]
    assert s["cayley_focus_of_mean_p"] == pytest.approx((1 - math.sqrt(1 - m)) / (1 + math.sqrt(1 - m)))
    assert s["histogram"]["edges"] == list(HIST_EDGES) and sum(s["histogram"]["counts"]) == 6
    assert s["histogram"]["counts"][0] == 1  # 1e-7 in [0, 1e-6)
    assert s["histogram"]["counts"][-1] == 1  # 0.95 in [0.9, 1]
    assert s["regime"] == "strong" and s["regime_by_focus"] == "strong"  # mean focus 0.59, mean p 0.34
    assert s["recommendation"]["objectives"][0] == "deft"
    assert any("confident conflicts" in note for note in s["recommendation"]["notes"])


def test_probe_cli_writes_json_and_token_stats(tiny_model_dir, figfont_records, tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(["probe", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--n", "3",
                 "--gates", "deft", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "regime: model-" in text and "recommended objectives" in text
    summary = json.loads((out / "probe.json").read_text())
    for key in ("mean_p", "mean_focus", "regime", "cayley_focus_of_mean_p", "histogram", "mean_entropy",
                "confident_conflicts", "recommendation", "thresholds"):
        assert key in summary
    assert summary["regime"] in ("strong", "intermediate", "weak")
    assert summary["regime"] == "weak"  # a random model: focus ~ 1/V
    st = load_token_stats(out / "token_stats.npz")
    assert st["p"].numel() == summary["tokens"] and "gate/deft" in st


def test_probe_cli_errors(tiny_model_dir, figfont_records, tmp_path, capsys):
    assert main(["probe", "--model", str(tiny_model_dir), "--data", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jsonl" in err[0]
    assert main(["probe", "--data", "x.jsonl", "--n", "-1"]) == 2
    assert main(["probe", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--gates", "sft_kl"]) == 2
    assert "needs" in capsys.readouterr().err


def test_a_malformed_record_stops_the_probe_like_training(tmp_path):
    """The same rule as 'deft train': a bad line is named (FILE:LINE), unless --skip-invalid."""
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "no response"}\n{"prompt": "c", "response": "d"}\n')
    with pytest.raises(ValueError, match=rf"{path.name}:2: .*--skip-invalid"):
        sample_records(path)
    kept = sample_records(path, skip_invalid=True)
    assert [i for i, _, _ in kept] == [0, 2]
