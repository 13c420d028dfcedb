"""Tests of deft.eval.generate_vllm: the vLLM generation backend, behind the same call as
:class:`deft.eval.generate.HFGenerator`."""

from deft.eval.generate import Generation, render_prompts
from deft.eval.runner import load_generator

from eval_generate_helpers import PROMPTS


class _StubVLLM:
    """Stands in for the vllm module: records what the backend asks for, answers canned text."""

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class LLM:
        created = []

        def __init__(self, **kw):
            self.kw, self.calls = kw, []
            _StubVLLM.LLM.created.append(self)

        def generate(self, prompts, params, use_tqdm=True):
            from types import SimpleNamespace as NS

            self.calls.append((prompts, params))
            return [NS(outputs=[NS(text=f"p{i}s{j}", token_ids=[1, 2], finish_reason="stop" if j else "length")
                                for j in range(p.n)]) for i, p in enumerate(params)]


def test_vllm_backend_renders_like_hf_and_maps_outputs(monkeypatch, tiny_model_dir):
    import sys

    from transformers import AutoTokenizer

    from deft.eval.generate_vllm import VLLMGenerator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)  # the tokenizer saved with the model

    monkeypatch.setitem(sys.modules, "vllm", _StubVLLM)
    gen = load_generator(str(tiny_model_dir), backend="vllm", dtype="bfloat16", seed=5)
    assert isinstance(gen, VLLMGenerator)
    assert gen.llm.kw["model"] == str(tiny_model_dir.resolve()) and gen.llm.kw["seed"] == 5
    out = gen(PROMPTS[:2], k=3, temperature=1.0, top_p=0.9, max_new_tokens=7, seed=2)
    prompts, params = gen.llm.calls[-1]
    assert [p["prompt_token_ids"] for p in prompts] == render_prompts(tokenizer, PROMPTS[:2])
    p = params[0]
    assert (p.n, p.temperature, p.top_p, p.max_tokens, p.seed, p.top_k) == (3, 1.0, 0.9, 7, 2, -1)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in p.stop_token_ids and params[1].seed == 3
    assert out[1] == [Generation("p1s0", 2, False), Generation("p1s1", 2, True), Generation("p1s2", 2, True)]
    greedy = gen(PROMPTS[:1], k=4, temperature=0.0, max_new_tokens=3)
    assert gen.llm.calls[-1][1][0].n == 1 and gen.llm.calls[-1][1][0].temperature == 0.0
    assert greedy == [[Generation("p0s0", 2, False)] * 4]
