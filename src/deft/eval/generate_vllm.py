"""The vLLM generation backend, behind the same call as :class:`deft.eval.generate.HFGenerator`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .generate import DTYPES, Generation, Prompt, check_options, render_prompts, stop_token_ids

__all__ = ["VLLMGenerator", "import_vllm"]

_VLLM_MISSING = "vLLM is not installed; pip install vllm or use --backend hf"


def import_vllm():
    """The ``vllm`` module, or a one-line ``ValueError`` saying how to install it."""
    try:
        import vllm
    except ImportError:
        raise ValueError(_VLLM_MISSING) from None
    return vllm


class VLLMGenerator:
    """A vLLM engine behind the same call as :class:`HFGenerator`.

    Prompts are rendered to token ids by :func:`render_prompts` (so both backends see identical
    inputs) and passed as ``{"prompt_token_ids": ...}``. Each prompt gets its own sampling seed
    (``seed + i``), so results do not depend on how vLLM schedules requests.
    """

    name = "vllm"

    def __init__(self, llm, tokenizer):
        self.llm = llm
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, spec: str, *, dtype: str = "auto", seed: int = 0, trust_remote_code: bool = False,
             **llm_kwargs: Any) -> "VLLMGenerator":
        """``vllm.LLM(model=<local directory or hub id>)`` for ``spec`` (a GGUF spec is converted
        once to a cached HF directory, see :func:`deft.model.loading.materialize`)."""
        vllm = import_vllm()
        from ..model import load_tokenizer
        from ..model.loading import materialize

        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        path = materialize(spec, trust_remote_code=trust_remote_code)
        tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)
        llm = vllm.LLM(model=path, tokenizer=path, dtype=dtype, seed=seed,
                       trust_remote_code=trust_remote_code, **llm_kwargs)
        return cls(llm, tokenizer)

    def __call__(self, prompts: Sequence[Prompt], *, k: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 512, batch_size: int = 8, seed: int = 0, template: str = "auto",
                 stop: Sequence[str] | None = None, extra_stop_token_ids: Sequence[int] = (),
                 progress: bool = True, desc: str | None = None) -> list[list[Generation]]:
        check_options(k, temperature, top_p, max_new_tokens, batch_size)  # batch_size: vLLM schedules itself
        vllm = import_vllm()
        ids = render_prompts(self.tokenizer, prompts, template)
        eos = stop_token_ids(self.tokenizer) + [int(t) for t in extra_stop_token_ids]
        sample = temperature > 0.0
        n = k if sample else 1
        params = [
            vllm.SamplingParams(
                n=n, temperature=float(temperature) if sample else 0.0, top_p=float(top_p) if sample else 1.0,
                top_k=-1, min_p=0.0, repetition_penalty=1.0, max_tokens=max_new_tokens,
                seed=int(seed) + i, stop_token_ids=eos, stop=list(stop) if stop else None,
                skip_special_tokens=True,
            )
            for i in range(len(ids))
        ]
        outputs = self.llm.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=progress)
        results = []
        for out in outputs:
            row = [Generation(c.text, len(c.token_ids), c.finish_reason == "stop") for c in out.outputs]
            results.append(row * k if n == 1 else row)
        return results
