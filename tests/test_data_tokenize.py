"""The tokenised view on the real embedded tokenizer: labels cover exactly the response tokens plus
the end-of-turn token, for chat and plain templates; truncation; weights; batching."""

import copy

import pytest
import torch

from deft.data import IGNORE_INDEX, RecordError, RecordTokenizer, collate, tokenize_record

from data_tokenize_helpers import REC, RESPONSE


def labelled(tok, ex):
    return tok.decode([i for i, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE_INDEX])


def test_chat_template_labels_are_response_and_end_of_turn(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ex = tokenize_record(REC, tok)
    assert labelled(tok, ex) == RESPONSE + "<|im_end|>"
    assert all(lab in (IGNORE_INDEX, i) for i, lab in zip(ex.input_ids, ex.labels))
    # the prompt is exactly what generation sees, and the labelled span is contiguous
    prompt = tok.apply_chat_template(
        [{"role": "system", "content": REC["system"]}, {"role": "user", "content": REC["prompt"]}],
        tokenize=False, add_generation_prompt=True)
    assert ex.prompt_ids == tok(prompt, add_special_tokens=False)["input_ids"]
    mask = ex.label_mask
    first, last = mask.index(True), len(mask) - 1 - mask[::-1].index(True)
    assert all(mask[first:last + 1]) and ex.num_loss_tokens == last - first + 1
    # the template's trailing newline after <|im_end|> is not trained on
    assert tok.decode(ex.input_ids[last + 1:]) == "\n"


def test_messages_last_turn_and_all_turns(smollm2_tokenizer):
    tok = smollm2_tokenizer
    rec = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    assert labelled(tok, tokenize_record(rec, tok)) == "4<|im_end|>"
    ex = tokenize_record(rec, tok, all_turns=True)
    assert labelled(tok, ex) == "Hello!<|im_end|>4<|im_end|>"


def test_plain_template_labels_are_response_and_eos(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ex = tokenize_record(REC, tok, template="plain")
    assert tok.decode(ex.prompt_ids) == "Answer briefly.\n\nWhat is the capital of France?\n"
    assert labelled(tok, ex) == RESPONSE + tok.eos_token
    assert ex.labels[-1] == tok.eos_token_id
    qa = tokenize_record(REC, tok, template="qa")
    assert tok.decode(qa.prompt_ids).endswith("Question: What is the capital of France?\nAnswer: ")
    with pytest.raises(ValueError, match="chat template"):
        RecordTokenizer(tok, template="plain", all_turns=True)


def test_template_that_appends_eos_trains_on_it(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% if m['role'] == 'assistant' %}<|endoftext|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    ex = tokenize_record(REC, tok)
    assert labelled(tok, ex) == RESPONSE + "<|im_end|>\n<|endoftext|>"


def test_prompt_not_a_prefix_is_an_error_naming_the_record(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ 'bot' if m['role'] == 'assistant' else m['role'] }}\n"
        "{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(RecordError, match=r"^data.jsonl:7: the chat-templated prompt is not a prefix"):
        RecordTokenizer(tok)(REC, "data.jsonl:7")


def test_truncation_policies(smollm2_tokenizer):
    tok = smollm2_tokenizer
    full = tokenize_record(REC, tok)
    n_resp = full.num_loss_tokens
    m = n_resp + 5
    left = RecordTokenizer(tok, max_length=m)
    ex = left(REC, "r:1")
    assert len(ex) == m and ex.truncated and labelled(tok, ex) == RESPONSE + "<|im_end|>"
    assert ex.input_ids[0] == full.input_ids[0]  # the first (start) token is kept
    assert left.stats.truncated == 1
    drop = RecordTokenizer(tok, max_length=m, truncation="drop")
    assert drop(REC) is None and drop.stats.dropped == 1
    right = RecordTokenizer(tok, max_length=m, truncation="right")
    with pytest.raises(RecordError, match="r:2: all prompt after truncation"):
        right(REC, "r:2")
    short = RecordTokenizer(tok, max_length=4)(REC)  # response alone too long: cut on the right
    assert len(short) == 4 and short.num_loss_tokens == 3
    assert RecordTokenizer(tok, max_length=len(full)).__call__(REC).truncated is False


def test_weights_align_with_labels(smollm2_tokenizer):
    tok = smollm2_tokenizer
    n_content = len(tok(RESPONSE, add_special_tokens=False)["input_ids"])
    rec = dict(REC, weight=2.0, token_weights=[0.5] * n_content)
    ex = tokenize_record(rec, tok)
    assert len(ex.weights) == len(ex.labels)
    assert all(w == 0.0 for w, lab in zip(ex.weights, ex.labels) if lab == IGNORE_INDEX)
    w = [x for x, lab in zip(ex.weights, ex.labels) if lab != IGNORE_INDEX]
    assert w == [1.0] * n_content + [2.0]  # 2 * 0.5 on content, 2 * 1 on <|im_end|>
    full_len = dict(REC, token_weights=list(range(1, n_content + 2)))
    assert [x for x in tokenize_record(full_len, tok).weights if x] == [float(i) for i in range(1, n_content + 2)]
    assert tokenize_record(REC, tok).weights is None
    with pytest.raises(RecordError, match=f"token_weights has 3 entries but the response has {n_content} tokens"):
        tokenize_record(dict(REC, token_weights=[1, 1, 1]), tok)


def test_collate_pads_and_keeps_alignment(smollm2_tokenizer):
    tok = smollm2_tokenizer
    a = tokenize_record(REC, tok)
    b = tokenize_record(dict(REC, prompt="Hi", weight=3.0), tok)
    batch = collate([a, b], tok.pad_token_id, pad_to_multiple_of=8)
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape == batch["labels"].shape
    assert batch["attention_mask"][0].sum() == len(a) and batch["attention_mask"][1].sum() == len(b)
    assert (batch["labels"][1, len(b):] == IGNORE_INDEX).all()
    assert torch.equal(batch["weights"][0], (batch["labels"][0] != IGNORE_INDEX).float())
    assert batch["weights"][1].sum() == 3.0 * b.num_loss_tokens
    assert "weights" not in collate([a], tok.pad_token_id)
