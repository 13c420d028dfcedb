"""Generation for evaluation: prompts rendered as in training, left padding, stop tokens, seeded
sampling, k samples; the vLLM path's error when vLLM is absent."""

import copy
import importlib.util

import pytest
import torch

from deft.data import RecordTokenizer
from deft.eval.generate import Generation, generate, generate_samples, render_prompts, stop_token_ids
from deft.eval.runner import load_generator

from eval_generate_helpers import PROMPTS


def _llama(tokenizer, *, seed=0, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    kw = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              tie_word_embeddings=True, initializer_range=0.2)  # wide enough init for varied text
    kw.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**kw)).eval()


@pytest.fixture(scope="module")
def tiny(smollm2_tokenizer):
    return _llama(smollm2_tokenizer)


def _always_im_end(tokenizer):
    """A model whose every next token is <|im_end|>: constant residual stream along one dimension,
    read out only by the <|im_end|> row of the LM head."""
    model = _llama(tokenizer, tie_word_embeddings=False)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight[im_end, 0] = 100.0
    return model


def test_prompt_ids_equal_the_training_prompt(smollm2_tokenizer):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    for template in ("chat", "plain", "qa"):
        answered = {"messages": [*msgs, {"role": "assistant", "content": "4"}]}
        train = RecordTokenizer(smollm2_tokenizer, template=template)(answered)
        assert render_prompts(smollm2_tokenizer, [msgs], template)[0] == train.prompt_ids, template
    text = smollm2_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                 add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert render_prompts(smollm2_tokenizer, ["hi"])[0] == ids
    no_chat = copy.deepcopy(smollm2_tokenizer)
    no_chat.chat_template = None  # auto -> plain
    assert render_prompts(no_chat, ["hi"]) == render_prompts(smollm2_tokenizer, ["hi"], "plain")
    with pytest.raises(ValueError, match="assistant"):
        render_prompts(smollm2_tokenizer, [[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]])


def test_stop_ids_include_eos_and_end_of_turn(smollm2_tokenizer, tiny):
    ids = stop_token_ids(smollm2_tokenizer, tiny)
    im_end = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ids[0] == smollm2_tokenizer.eos_token_id and im_end in ids and len(ids) == len(set(ids))


def test_left_padded_batches_match_unbatched_greedy(smollm2_tokenizer, tiny):
    batched = generate(tiny, smollm2_tokenizer, PROMPTS, max_new_tokens=6, batch_size=4, progress=False)
    single = generate(tiny, smollm2_tokenizer, PROMPTS, max_new_tokens=6, batch_size=1, progress=False)
    assert batched == single
    assert len({row[0] for row in batched}) == len(PROMPTS)  # the outputs differ: a real check
    # the order of the inputs is kept whatever the length sorting does
    rev = generate(tiny, smollm2_tokenizer, PROMPTS[::-1], max_new_tokens=6, batch_size=4, progress=False)
    assert rev == batched[::-1]


def test_greedy_k_repeats_and_sampling_is_seeded(smollm2_tokenizer, tiny):
    greedy = generate(tiny, smollm2_tokenizer, PROMPTS[:2], k=3, max_new_tokens=4, progress=False)
    assert [len(r) for r in greedy] == [3, 3] and all(len(set(r)) == 1 for r in greedy)
    before = torch.random.get_rng_state()
    opts = dict(k=3, temperature=1.0, max_new_tokens=4, batch_size=5, progress=False)
    a = generate(tiny, smollm2_tokenizer, PROMPTS[:3], seed=0, **opts)
    b = generate(tiny, smollm2_tokenizer, PROMPTS[:3], seed=0, **opts)
    c = generate(tiny, smollm2_tokenizer, PROMPTS[:3], seed=1, **opts)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert a == b and a != c
    assert [len(r) for r in a] == [3, 3, 3] and all(len(set(r)) > 1 for r in a)


def test_generation_stops_at_end_of_turn(smollm2_tokenizer):
    model = _always_im_end(smollm2_tokenizer)
    out = generate_samples(model, smollm2_tokenizer, PROMPTS, k=2, temperature=1.0, max_new_tokens=8,
                           batch_size=3, progress=False)
    assert all(g == Generation("", 1, True) for row in out for g in row)


def test_stop_tokens_and_stop_strings_cut_the_text(smollm2_tokenizer, tiny):
    ref = generate_samples(tiny, smollm2_tokenizer, PROMPTS[:1], max_new_tokens=8, progress=False)[0][0]
    assert not ref.finished and ref.num_tokens == 8
    ids = render_prompts(smollm2_tokenizer, PROMPTS[:1])[0]
    toks = tiny.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=8, do_sample=False, pad_token_id=0)[0, len(ids):].tolist()
    assert smollm2_tokenizer.decode(toks, skip_special_tokens=True) == ref.text
    m = next(i for i in range(1, 8) if toks[i] not in toks[:i])  # a token that first appears at m
    cut = generate_samples(tiny, smollm2_tokenizer, PROMPTS[:1], max_new_tokens=8, progress=False,
                           extra_stop_token_ids=[toks[m]])[0][0]
    assert cut == Generation(smollm2_tokenizer.decode(toks[:m], skip_special_tokens=True), m + 1, True)
    word = ref.text.strip().split()[0][:3]
    trimmed = generate_samples(tiny, smollm2_tokenizer, PROMPTS[:1], max_new_tokens=8, progress=False,
                               stop=[word])[0][0]
    assert trimmed.finished and trimmed.text == ref.text[:ref.text.find(word)]


def test_options_are_checked(smollm2_tokenizer, tiny):
    for bad in (dict(k=0), dict(temperature=-1.0), dict(top_p=0.0), dict(max_new_tokens=0), dict(batch_size=0)):
        with pytest.raises(ValueError):
            generate(tiny, smollm2_tokenizer, ["hi"], progress=False, **bad)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_backend_absent_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^vLLM is not installed; pip install vllm or use --backend hf$"):
        load_generator("smollm2-135m", backend="vllm")
