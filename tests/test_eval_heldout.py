"""Held-out learning / forgetting metrics (deft.eval.heldout) against independent computations."""

import math

import pytest
import torch

from deft.eval.heldout import (
    drift_kl, general_records, heldout_mean_p, heldout_metrics, heldout_nll, retained_nll, token_logprobs,
)

RECORDS = [
    {"prompt": "Spell cat.", "response": "c a t"},
    {"prompt": "Spell dog backwards.", "response": "g o d"},
    {"prompt": "Say hello.", "response": "Hello there, friend!"},
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from deft.model import load_model, load_tokenizer

    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def _reference_logps(model, tok, records):
    """One record at a time, no padding, through plain logits: log P[y] of each response token."""
    from deft.data import RecordTokenizer

    view = RecordTokenizer(tok, max_length=1024)
    out = []
    with torch.no_grad():
        for rec in records:
            ex = view(rec, "test")
            ids = torch.tensor([ex.input_ids])
            logits = model(input_ids=ids).logits[0].double()
            for t in range(1, len(ex.labels)):
                if ex.labels[t] != -100:
                    out.append(torch.log_softmax(logits[t - 1], -1)[ex.labels[t]].item())
    return out


def test_nll_and_mean_p_match_a_record_by_record_computation(tiny):
    model, tok = tiny
    ref = _reference_logps(model, tok, RECORDS)
    assert len(ref) == token_logprobs(model, tok, RECORDS, batch_size=2).numel()
    assert heldout_nll(model, tok, RECORDS, batch_size=2) == pytest.approx(-sum(ref) / len(ref), rel=1e-5)
    assert heldout_mean_p(model, tok, RECORDS) == pytest.approx(sum(math.exp(x) for x in ref) / len(ref), rel=1e-5)
    assert retained_nll(model, tok, RECORDS) == pytest.approx(-sum(ref) / len(ref), rel=1e-5)


def test_drift_kl_is_zero_for_identical_models_and_matches_hand_computation(tiny, tiny_model_dir):
    from deft.data import RecordTokenizer
    from deft.model import load_model

    model, tok = tiny
    twin = load_model(str(tiny_model_dir))
    assert drift_kl(model, twin, tok, RECORDS) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():  # a different model: scale the LM head, so every distribution changes
        twin.get_output_embeddings().weight.mul_(3.0)
    kl = drift_kl(model, twin, tok, RECORDS, batch_size=3)
    view = RecordTokenizer(tok, max_length=1024)
    terms = []
    with torch.no_grad():
        for rec in RECORDS:
            ex = view(rec, "test")
            ids = torch.tensor([ex.input_ids])
            pb = torch.softmax(model(input_ids=ids).logits[0].double(), -1)
            pt = torch.softmax(twin(input_ids=ids).logits[0].double(), -1)
            for t in range(1, len(ex.labels)):
                if ex.labels[t] != -100:
                    terms.append(float((pb[t - 1] * (pb[t - 1].log() - pt[t - 1].log())).sum()))
    assert kl > 1e-3
    assert kl == pytest.approx(sum(terms) / len(terms), rel=1e-4)


def test_training_on_the_heldout_set_lowers_heldout_nll_and_shows_learned_tokens(tiny_model_dir, tiny):
    from deft.data import RecordTokenizer, collate
    from deft.model import load_model

    base, tok = tiny
    tuned = load_model(str(tiny_model_dir))
    view = RecordTokenizer(tok, max_length=1024)
    batch = collate([view(r, "t") for r in RECORDS], tok.pad_token_id)
    opt = torch.optim.SGD(tuned.parameters(), lr=0.5)
    for _ in range(5):
        loss = tuned(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    tuned.eval()
    before, after = heldout_nll(base, tok, RECORDS), heldout_nll(tuned, tok, RECORDS)
    assert after < before - 0.1
    # a random model's p is ~1e-5 over a 49k vocabulary: count any rise / fall (threshold 0)
    m = heldout_metrics(tuned, tok, RECORDS, base_model=base, ood_records=RECORDS, threshold=0.0)
    assert m["heldout_nll"] == pytest.approx(after, rel=1e-6)
    assert m["retained_nll"] == pytest.approx(after, rel=1e-6)  # the same records as the out-of-domain set
    assert m["drift_kl"] > 0
    assert m["learned"] > m["forgotten"]
    assert m["learned"] == pytest.approx(m["learned_high"] + m["learned_low"])
    # the base model against itself: nothing learned, nothing forgotten, no drift
    same = heldout_metrics(base, tok, RECORDS, base_model=base, ood_records=RECORDS, threshold=0.0)
    assert same["learned"] == same["forgotten"] == 0.0 and same["drift_kl"] == pytest.approx(0.0, abs=1e-6)


def test_general_records_are_greedy_answers_and_bad_records_are_located(tiny):
    model, tok = tiny
    from deft.eval.generate import generate

    prompts = ["Say one word.", "Name a colour."]
    recs = general_records(model, tok, prompts, max_new_tokens=4)
    greedy = [row[0] for row in generate(model, tok, prompts, max_new_tokens=4, progress=False)]
    assert recs == [{"prompt": q, "response": a} for q, a in zip(prompts, greedy) if a.strip()]
    with pytest.raises(ValueError, match="record 1"):
        heldout_nll(model, tok, [RECORDS[0], {"prompt": "x"}])
