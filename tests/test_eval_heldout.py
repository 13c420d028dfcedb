"""Held-out learning / forgetting metrics (deft.eval.heldout) against independent computations."""

import json
import math

import pytest
import torch

from deft.cli.main import main
from deft.eval.heldout import (content_by_record, drift_kl, end_token_flags, general_records, heldout_mean_p,
                               heldout_metrics, heldout_nll, retained_nll, token_logprobs, token_logprobs_by_class,
                               token_logprobs_by_record)

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


# --- token classes: content vs end-of-turn / template ---------------------------------------------
def _split(tok, rec, **kw):
    """``(content text, end text)``: the labelled tokens of ``rec`` decoded by class."""
    from deft.data import RecordTokenizer

    ex = RecordTokenizer(tok, **kw)(rec)
    ids = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != -100]
    flags = end_token_flags(tok, rec, **kw)
    assert len(flags) == len(ids)
    return tok.decode([t for t, f in zip(ids, flags) if not f]), tok.decode([t for t, f in zip(ids, flags) if f])


def _tokenizer_with(template, *specials):
    from tiny_models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    if specials:
        tok.add_special_tokens({"additional_special_tokens": list(specials)})
    tok.chat_template = template
    return tok


def _turns(body):
    """A chat template writing each message as ``body`` (a Jinja expression of ``m``)."""
    return ("{% for m in messages %}{{ " + body + " }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def test_chatml_end_of_turn_is_the_only_end_token(tiny_tokenizer):
    for rec in RECORDS:
        assert _split(tiny_tokenizer, rec) == (rec["response"], "<|im_end|>")
    # spaces the response itself has are content, not template
    assert _split(tiny_tokenizer, {"prompt": "x", "response": "  spaced  "}) == ("  spaced  ", "<|im_end|>")


def test_a_template_that_trims_the_response_and_closes_with_its_own_token():
    # Gemma's shape: the response is trimmed and closed by <end_of_turn> (a special token this
    # tokenizer gets here: nothing in the rule names it)
    tok = _tokenizer_with(_turns("'<|im_start|>' + m['role'] + '\\n' + (m['content'] | trim) + '<end_of_turn>\\n'"),
                          "<end_of_turn>")
    assert _split(tok, {"prompt": "Say hi.", "response": "  Hello there  "}) == ("Hello there", "<end_of_turn>")


def test_text_the_template_writes_after_the_response_is_end_special_or_not():
    tok = _tokenizer_with(_turns("'<|im_start|>' + m['role'] + '\\n' + m['content'] + '\\n</answer><|im_end|>\\n'"))
    assert _split(tok, {"prompt": "Spell cat.", "response": "c a t"}) == ("c a t", "\n</answer><|im_end|>")


def test_text_the_template_writes_before_the_response_in_the_turn_is_not_content():
    # Qwen3's shape: an empty thinking block opens the assistant turn after the generation prompt
    think = "('<think></think>' if m['role'] == 'assistant' else '')"
    tok = _tokenizer_with(_turns(f"'<|im_start|>' + m['role'] + '\\n' + {think} + m['content'] + '<|im_end|>'"))
    assert _split(tok, {"prompt": "Spell cat.", "response": "c a t"}) == ("c a t", "<think></think><|im_end|>")


def test_a_template_that_rewrites_the_response_falls_back_to_the_closing_special_tokens():
    tok = _tokenizer_with(_turns("'<|im_start|>' + m['role'] + '\\n' + (m['content'] | upper) + '</answer><|im_end|>'"))
    assert _split(tok, {"prompt": "Spell cat.", "response": "c a t"}) == ("C A T</answer>", "<|im_end|>")


def test_a_plain_template_has_one_end_token_the_eos(tiny_tokenizer):
    for rec in RECORDS:
        assert _split(tiny_tokenizer, rec, template="plain") == (rec["response"], tiny_tokenizer.eos_token)


def test_figfont_answers_under_the_embedded_tokenizer_end_with_one_end_of_turn_token(smollm2_tokenizer):
    """The replication's model-weak held-out set (32 FigFont puzzles, seed 1, test split) under
    SmolLM2's own chat template (with its default system prompt): every answer's tokens are
    content, and the one end token is ``<|im_end|>``; short answers make it a large share."""
    from deft.data.sources import source_records

    records = [rec for _, rec in source_records("figfont", n=32, seed=1, split="test")]
    ends = total = 0
    for rec in records:
        content, end = _split(smollm2_tokenizer, rec)
        assert (content, end) == (rec["response"], "<|im_end|>")
        flags = end_token_flags(smollm2_tokenizer, rec)
        total, ends = total + len(flags), ends + sum(flags)
    assert ends == len(records) == 32 and ends / total > 0.2


def test_per_record_content_sums_recover_the_pooled_metrics_and_each_record(tiny):
    """Each token is owned by its record (through batches of 2 with padding); the per-record content
    sums are each record's own reference log-probabilities, and pooled they give content_nll / mean p."""
    model, tok = tiny
    logp, is_end, record = token_logprobs_by_record(model, tok, RECORDS, batch_size=2)
    lengths = [len(end_token_flags(tok, rec)) for rec in RECORDS]
    assert record.tolist() == [i for i, n in enumerate(lengths) for _ in range(n)]
    sums = content_by_record(logp, is_end, record)
    for i, rec in enumerate(RECORDS):
        ref = torch.tensor(_reference_logps(model, tok, [rec]), dtype=torch.float64)
        content = ref[:-1]  # the last token of each record is its <|im_end|>
        assert sums["content_tokens"][i] == content.numel()
        assert sums["content_logp_sum"][i] == pytest.approx(float(content.sum()), abs=1e-4)
        assert sums["content_p_sum"][i] == pytest.approx(float(content.exp().sum()), abs=1e-5)
    m = heldout_metrics(model, tok, RECORDS, batch_size=2, per_record=True)
    pooled = m["per_record"]
    assert -sum(pooled["content_logp_sum"]) / sum(pooled["content_tokens"]) == pytest.approx(m["content_nll"])
    assert sum(pooled["content_p_sum"]) / sum(pooled["content_tokens"]) == pytest.approx(m["content_mean_p"])
    assert "per_record" not in heldout_metrics(model, tok, RECORDS, batch_size=2)
    # a record without content tokens keeps its place with zero sums
    none = content_by_record(torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([False, True, False]),
                             torch.tensor([0, 1, 2]))
    assert none == {"content_logp_sum": [-1.0, 0.0, -3.0], "content_p_sum": pytest.approx([math.exp(-1), 0.0,
                                                                                           math.exp(-3)]),
                    "content_tokens": [1, 0, 1]}


def test_token_classes_follow_the_scored_tokens_through_batches_and_truncation(tiny):
    model, tok = tiny
    logp, is_end = token_logprobs_by_class(model, tok, RECORDS, batch_size=2)
    assert torch.equal(logp, token_logprobs(model, tok, RECORDS, batch_size=2))
    want = [f for rec in RECORDS for f in end_token_flags(tok, rec)]
    assert is_end.tolist() == want and sum(want) == len(RECORDS)
    # max_length 5 keeps the first token and 4 response tokens (of 6 or more): no end-of-turn left
    logp, is_end = token_logprobs_by_class(model, tok, RECORDS, max_length=5)
    assert logp.numel() == 4 * len(RECORDS) and not is_end.any()
    # max_length 7 keeps all 6 tokens of "c a t<|im_end|>": the flags of a kept end token survive
    logp, is_end = token_logprobs_by_class(model, tok, RECORDS[:1], max_length=7)
    assert is_end.tolist() == [False] * 5 + [True]


def test_content_and_end_metrics_match_a_record_by_record_computation(tiny):
    model, tok = tiny
    ref = torch.tensor(_reference_logps(model, tok, RECORDS), dtype=torch.float64)
    end = torch.tensor([f for rec in RECORDS for f in end_token_flags(tok, rec)])
    m = heldout_metrics(model, tok, RECORDS, batch_size=3)
    assert m["content_tokens"] == int((~end).sum()) and m["end_tokens"] == int(end.sum()) == len(RECORDS)
    assert m["content_tokens"] + m["end_tokens"] == m["heldout_tokens"]
    assert m["content_nll"] == pytest.approx(float(-ref[~end].mean()), rel=1e-5)
    assert m["content_mean_p"] == pytest.approx(float(ref[~end].exp().mean()), rel=1e-5)
    assert m["end_nll"] == pytest.approx(float(-ref[end].mean()), rel=1e-5)
    assert m["end_mean_p"] == pytest.approx(float(ref[end].exp().mean()), rel=1e-5)
    assert list(m)[:3] == ["content_nll", "content_mean_p", "content_tokens"]  # content leads results.json


def test_a_model_that_only_learned_to_stop_shows_no_content_learning(tiny_model_dir, tiny):
    """The -p objective's failure in the model-weak regime: all-token mean p rises to about the
    end-of-turn share while the content tokens learn nothing; only the class split shows it."""
    from deft.data import RecordTokenizer, collate
    from deft.model import load_model

    base, tok = tiny
    tuned = load_model(str(tiny_model_dir))
    batch = collate([RecordTokenizer(tok, max_length=1024)(r, "t") for r in RECORDS], tok.pad_token_id)
    end_only = batch["labels"].masked_fill(batch["labels"] != tok.convert_tokens_to_ids("<|im_end|>"), -100)
    opt = torch.optim.Adam(tuned.parameters(), lr=1e-2)
    for _ in range(20):
        loss = tuned(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=end_only).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    tuned.eval()
    m = heldout_metrics(tuned, tok, RECORDS, base_model=base)
    b = heldout_metrics(base, tok, RECORDS)
    share = m["end_tokens"] / m["heldout_tokens"]
    assert m["end_mean_p"] > 0.9 and m["heldout_mean_p"] == pytest.approx(share, abs=0.02)
    assert m["heldout_mean_p"] > 10 * b["heldout_mean_p"]  # all tokens: looks like learning
    assert m["content_mean_p"] <= b["content_mean_p"] and m["content_nll"] >= b["content_nll"]  # it is not
    assert m["learned"] == pytest.approx(share) and m["content_learned"] == 0.0
    assert m["heldout_nll"] * m["heldout_tokens"] == pytest.approx(
        m["content_nll"] * m["content_tokens"] + m["end_nll"] * m["end_tokens"])


def test_general_records_are_greedy_answers_and_bad_records_are_located(tiny):
    model, tok = tiny
    from deft.eval.generate import generate

    prompts = ["Say one word.", "Name a colour."]
    recs = general_records(model, tok, prompts, max_new_tokens=4)
    greedy = [row[0] for row in generate(model, tok, prompts, max_new_tokens=4, progress=False)]
    assert recs == [{"prompt": q, "response": a} for q, a in zip(prompts, greedy) if a.strip()]
    with pytest.raises(ValueError, match="record 1"):
        heldout_nll(model, tok, [RECORDS[0], {"prompt": "x"}])


HELDOUT = [
    {"prompt": "Spell cat.", "response": "c a t"},
    {"prompt": "Spell dog backwards.", "response": "g o d"},
    {"prompt": "Say hello.", "response": "Hello there, friend!"},
]


def run(capsys, *argv):
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def heldout_file(tmp_path):
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in HELDOUT))
    return path


@pytest.fixture(scope="module")
def answering_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny model that answers every prompt with letters (a random tiny model's greedy answers
    are empty): the final norm keeps one hidden coordinate x0 and the LM head maps it to +x0 for
    'a' and -x0 for 'b', 0 for every other token, so 'a' or 'b' always wins (x0 != 0)."""
    from deft.model import load_model

    from tiny_models import save_tiny_model_dir

    path = save_tiny_model_dir(tmp_path_factory.mktemp("tiny_letters"), tiny_tokenizer, seed=1)
    model = load_model(str(path))
    model.config.tie_word_embeddings = False  # the head changes below, the input embeddings stay
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    with torch.no_grad():
        norm = model.model.norm.weight
        norm.zero_()
        norm[0] = 1.0
        head = model.lm_head.weight
        head.zero_()
        head[tiny_tokenizer.convert_tokens_to_ids("a"), 0] = 50.0
        head[tiny_tokenizer.convert_tokens_to_ids("b"), 0] = -50.0
    model.save_pretrained(path)
    return path


def _load(path):
    from deft.model import load_model, load_tokenizer

    return load_model(str(path)).eval(), load_tokenizer(str(path))


def test_heldout_alone_writes_the_metrics_of_the_model(tmp_path, capsys, tiny_model_dir, heldout_file):
    out = tmp_path / "eval"
    code, stdout, err = run(capsys, "--model", str(tiny_model_dir), "--heldout", str(heldout_file),
                            "--out", str(out), "--no-progress")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    model, tok = _load(tiny_model_dir)
    want = heldout_metrics(model, tok, HELDOUT)
    assert res["heldout"]["heldout_nll"] == pytest.approx(want["heldout_nll"], rel=1e-6)
    assert res["heldout"]["heldout_mean_p"] == pytest.approx(want["heldout_mean_p"], rel=1e-6)
    assert res["heldout"]["heldout_tokens"] == want["heldout_tokens"] > 0
    assert "learned" not in res["heldout"] and "drift_kl" not in res["heldout"]
    assert f"{want['heldout_nll']:.4f}" in stdout and "held-out NLL" in stdout
    for key in ("content_nll", "content_mean_p", "end_nll", "end_mean_p"):
        assert res["heldout"][key] == pytest.approx(want[key], rel=1e-6), key
    assert res["heldout"]["end_tokens"] == len(HELDOUT) and res["heldout"]["content_tokens"] == want["content_tokens"]
    assert list(res["heldout"])[:2] == ["content_nll", "content_mean_p"]
    # the printed report leads with the content tokens, then end-of-turn, then all tokens
    lines = stdout.splitlines()
    assert lines[0].startswith("model ") and lines[1].startswith("content NLL")
    assert lines[1].split()[-1] == f"{want['content_nll']:.4f}"
    assert lines[2].startswith("content mean target probability")
    labels = [line.split("  ")[0] for line in lines]
    assert labels.index("end-of-turn / template mean target probability") < labels.index(
        "all tokens: held-out NLL (nats/token)")
    assert res["_config"]["heldout"] == str(heldout_file)


def test_base_model_and_forgetting_add_shares_drift_and_retained_nll(tmp_path, capsys, tiny_model_dir,
                                                                     answering_model_dir, heldout_file):
    out = tmp_path / "eval"
    code, stdout, err = run(capsys, "--model", str(tiny_model_dir), "--heldout", str(heldout_file),
                            "--base-model", str(answering_model_dir), "--forgetting", "--out", str(out),
                            "--no-progress")
    assert code == 0, err
    got = json.loads((out / "results.json").read_text())["heldout"]
    tuned, tok = _load(tiny_model_dir)
    base, _ = _load(answering_model_dir)
    ood = general_records(base, tok)
    assert all(set(r["response"]) <= set("ab ") for r in ood)
    want = heldout_metrics(tuned, tok, HELDOUT, base_model=base, ood_records=ood)
    for key in ("heldout_nll", "learned", "forgotten", "learned_high", "forgotten_low", "drift_kl", "retained_nll",
                "content_nll", "content_learned", "content_forgotten", "end_mean_p"):
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-12), key
    assert got["drift_kl"] > 0.01  # different weights: the predictions differ
    assert got["ood_answers"] == len(ood) > 0
    assert "drift KL" in stdout and "content tokens learned" in stdout
    assert stdout.index("content tokens learned") < stdout.index("all tokens: learned")


def test_the_base_model_against_itself_learns_forgets_and_drifts_nothing(tmp_path, capsys, answering_model_dir,
                                                                         heldout_file):
    m = str(answering_model_dir)
    code, _, err = run(capsys, "--model", m, "--heldout", str(heldout_file), "--base-model", m, "--forgetting",
                       "--out", str(tmp_path / "e"), "--no-progress")
    assert code == 0, err
    got = json.loads((tmp_path / "e" / "results.json").read_text())["heldout"]
    assert got["learned"] == 0.0 and got["forgotten"] == 0.0
    assert got["content_learned"] == 0.0 and got["content_forgotten"] == 0.0
    assert got["drift_kl"] == pytest.approx(0.0, abs=1e-6) and got["ood_answers"] > 0


def test_a_base_model_that_answers_no_general_prompt_gives_no_forgetting_metrics(tmp_path, capsys, tiny_model_dir):
    m = str(tiny_model_dir)  # a random tiny model's greedy answers are all empty
    code, stdout, err = run(capsys, "--model", m, "--base-model", m, "--forgetting", "--out", str(tmp_path / "e"),
                            "--no-progress")
    assert code == 0, err
    got = json.loads((tmp_path / "e" / "results.json").read_text())["heldout"]
    assert got == {"ood_answers": 0}
    assert "general prompts the base model answered" in stdout


def test_heldout_next_to_a_benchmark_is_not_averaged_with_it(tmp_path, capsys, tiny_model_dir, heldout_file,
                                                             figfont_records):
    out = tmp_path / "eval"
    code, stdout, err = run(capsys, "--model", str(tiny_model_dir), "--benchmark", str(figfont_records), "--scorer",
                            "exact", "--limit", "2", "--max-new-tokens", "3", "--heldout", str(heldout_file),
                            "--out", str(out), "--no-progress")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    name = figfont_records.stem
    assert set(res) == {name, "average", "heldout", "_config"}
    assert res["average"]["average_at_k"] == res[name]["average_at_k"]  # the held-out metrics are not averaged in
    assert "avg@k" in stdout and "held-out NLL" in stdout
    assert not (out / "results.partial.json").exists()


def test_a_changed_heldout_file_is_another_evaluation(tmp_path, capsys, tiny_model_dir, heldout_file):
    out = tmp_path / "eval"
    args = ["--model", str(tiny_model_dir), "--heldout", str(heldout_file), "--out", str(out), "--no-progress"]
    assert run(capsys, *args)[0] == 0
    heldout_file.write_text(json.dumps(HELDOUT[0]) + "\n")
    code, _, err = run(capsys, *args)
    assert code == 2 and "--overwrite" in err, err
    code, _, err = run(capsys, *args, "--overwrite")
    assert code == 0, err
    model, tok = _load(tiny_model_dir)
    want = heldout_metrics(model, tok, HELDOUT[:1])["heldout_nll"]
    assert json.loads((out / "results.json").read_text())["heldout"]["heldout_nll"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--forgetting"], "--base-model"),
    ([], "--heldout FILE"),
])
def test_missing_inputs_are_one_line_errors(capsys, extra, message):
    code, _, err = run(capsys, "--model", "/nonexistent/model", *extra)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_bad_heldout_record_is_located_before_the_model_loads(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(HELDOUT[0]) + "\n{not json\n")
    code, _, err = run(capsys, "--model", "/nonexistent/model", "--heldout", str(bad))
    assert code == 2 and f"{bad}:2" in err and err.count("\n") == 1, err
