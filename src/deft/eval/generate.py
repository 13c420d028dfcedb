"""Generation for evaluation: HF ``generate`` (default, works on CPU); vLLM in :mod:`.generate_vllm`.

* :func:`render_prompts` — prompt token ids exactly as training builds them
  (:class:`deft.data.RecordTokenizer`): the chat template with ``add_generation_prompt=True``
  (tokenised without adding special tokens, since the template writes its own), or a plain
  template (``plain``, ``qa``) with the tokenizer's BOS prefix.
* :func:`stop_token_ids` — EOS, the chat template's end-of-turn token (``<|im_end|>``,
  ``<|eot_id|>``, ``<end_of_turn>``, ...) and the model's own ``generation_config`` EOS ids.
* :func:`generate` — ``k`` samples per prompt as text; :func:`generate_samples` the same with
  token counts and whether each sample stopped on its own (:class:`Generation`).
* :class:`HFGenerator` — a loaded model behind the call signature that
  :class:`deft.eval.generate_vllm.VLLMGenerator` shares; :func:`deft.eval.runner.load_generator`
  loads either by name for :func:`deft.eval.runner.evaluate`.

HF generation runs in batches with the KV cache and left padding; prompts are sorted by length
(longest first) and results returned in the input order. Temperature 0 is greedy decoding
(``k`` > 1 then repeats the one greedy sample); otherwise sampling with ``temperature`` and
``top_p`` only (no top-k, no repetition penalty, whatever the model's ``generation_config`` says).
Sampling is reproducible: batch ``b`` draws from the torch RNG seeded with a value derived from
``seed`` and ``b``, inside :func:`torch.random.fork_rng` so the caller's RNG state is untouched.
Results depend on ``seed``, the prompts and ``batch_size`` (batch composition changes the RNG
draws), not on anything else.

Generated text is decoded without special tokens and cut before the first stop string. It is
only ever read and scored as text: nothing generated is executed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch

__all__ = [
    "Generation", "HFGenerator", "generate", "generate_samples", "render_prompts", "stop_token_ids",
]

Prompt = Union[str, Sequence[dict]]

# end-of-turn / end-of-text tokens of common chat formats, used when the tokenizer has them as
# special tokens (the chat template's own closing token is found by rendering it, see below)
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end_of_turn|>", "<|end|>",
                      "<|endoftext|>", "<|end_of_text|>", "</s>")



@dataclass(frozen=True)
class Generation:
    """One generated sample: ``text`` (special tokens removed, cut before a stop string),
    ``num_tokens`` generated (the stop token included) and ``finished`` — True when it ended on a
    stop token or stop string, False when ``max_new_tokens`` cut it."""

    text: str
    num_tokens: int
    finished: bool


# ---------------------------------------------------------------- prompts


def _messages(prompt: Prompt, where: str) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, dict) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        raise ValueError(f"{where}: a prompt is a string or a list of {{'role', 'content'}} messages")
    msgs = [dict(m) for m in prompt]
    if not msgs:
        raise ValueError(f"{where}: empty conversation")
    if msgs[-1]["role"] == "assistant":
        raise ValueError(f"{where}: the conversation ends with an assistant turn; generation continues after "
                         "a user turn")
    return msgs


def render_prompts(tokenizer, prompts: Sequence[Prompt], template: str = "auto") -> list[list[int]]:
    """Token ids of each prompt as the model saw prompts in training.

    A prompt is a list of chat messages (``role``/``content``, not ending with an assistant turn),
    a string (one user turn) or a :class:`~deft.eval.problem.RawPrompt` (literal text, tokenised
    as it is with the tokenizer's BOS, as vLLM does). ``template`` is ``auto``, ``chat``, ``plain`` or ``qa``
    (:func:`deft.data.resolve_template`). The result equals the ``prompt_ids`` of the same
    conversation tokenised for training by :class:`deft.data.RecordTokenizer`.
    """
    from ..data.records import RecordError
    from ..data.tokenize import RecordTokenizer

    from .problem import RawPrompt

    rt = RecordTokenizer(tokenizer, template=template)
    out = []
    for i, prompt in enumerate(prompts):
        where = f"prompt {i}"
        if isinstance(prompt, RawPrompt):  # a literal prompt: tokenised as vLLM does (BOS added if any)
            ids = list(tokenizer(str(prompt), add_special_tokens=True)["input_ids"])
            if not ids:
                raise ValueError(f"{where}: renders to no tokens")
            out.append(ids)
            continue
        messages = _messages(prompt, where)
        try:
            ids = rt.prompt_ids(messages)
        except RecordError as err:
            raise ValueError(f"{where}: {err}") from None
        if not ids:
            raise ValueError(f"{where}: renders to no tokens")
        out.append(ids)
    return out


def _as_list(x) -> list[int]:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return [int(v) for v in x if v is not None]
    return [int(x)]


def _template_end_of_turn(tokenizer, special: set[int]) -> list[int]:
    """The special token(s) the chat template writes right after an assistant response."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    mark = "deft-response-mark"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": mark}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that rejects this toy chat simply gives no hint
        return []
    at = text.rfind(mark)
    if at < 0:
        return []
    tail = tokenizer(text[at + len(mark):], add_special_tokens=False)["input_ids"]
    out = []
    for tid in tail:
        if int(tid) in special:
            out.append(int(tid))
        elif out or tokenizer.decode([tid]).strip():
            break  # stop at the first non-special text after the closing token(s)
    return out[:1]


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS, the chat template's end-of-turn token,
    the model's ``generation_config.eos_token_id`` and the common end-of-turn tokens the tokenizer
    has as special tokens (:data:`END_OF_TURN_TOKENS`). EOS first; no duplicates."""
    from ..data.tokenize import special_token_ids  # the one definition, shared with training

    special = special_token_ids(tokenizer)
    ids = _as_list(getattr(tokenizer, "eos_token_id", None))
    ids += _template_end_of_turn(tokenizer, special)
    gen_cfg = getattr(model, "generation_config", None)
    ids += _as_list(getattr(gen_cfg, "eos_token_id", None))
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab and vocab[t] in special]
    out: list[int] = []
    for i in ids:
        if i not in out and i >= 0:
            out.append(i)
    if not out:
        raise ValueError("the tokenizer has no EOS or end-of-turn token, so generation could never stop; "
                         "use a tokenizer with an EOS token")
    return out


def _trim_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def check_options(k: int, temperature: float, top_p: float, max_new_tokens: int, batch_size: int) -> None:
    """Raise a one-line ``ValueError`` for sampling options no backend can use (``k >= 1``,
    ``temperature >= 0``, ``0 < top_p <= 1``, positive token budget and batch size)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (samples per problem) must be an integer >= 1; got {k!r}")
    if not (temperature >= 0.0):
        raise ValueError(f"temperature must be >= 0 (0 is greedy decoding); got {temperature!r}")
    if not (0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must lie in (0, 1]; got {top_p!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1; got {max_new_tokens!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")


def _progress(total: int, desc: str | None, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "generating", unit="problem", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, leave=True)


# ---------------------------------------------------------------- HF backend


def _batch_seed(seed: int, batch: int) -> int:
    return (int(seed) * 1_000_003 + batch * 7919) % (2**63 - 1)


def generate_samples(model, tokenizer, prompts: Sequence[Prompt], *, k: int = 1, temperature: float = 0.0,
                     top_p: float = 1.0, max_new_tokens: int = 512, batch_size: int = 8, seed: int = 0,
                     template: str = "auto", stop: Sequence[str] | None = None,
                     extra_stop_token_ids: Sequence[int] = (), progress: bool = True,
                     desc: str | None = None) -> list[list[Generation]]:
    """``k`` :class:`Generation` samples per prompt with HF ``generate`` (see the module docstring).

    ``batch_size`` counts sequences generated together (a prompt's ``k`` samples are ``k`` rows).
    ``stop`` are stop strings (generation of a row ends at one; the text is cut before it);
    ``extra_stop_token_ids`` are added to :func:`stop_token_ids`. ``progress`` shows a progress bar
    (problems/s) on stderr, titled ``desc``.
    """
    check_options(k, temperature, top_p, max_new_tokens, batch_size)
    from transformers import GenerationConfig

    ids = render_prompts(tokenizer, prompts, template)
    eos = stop_token_ids(tokenizer, model) + [int(t) for t in extra_stop_token_ids]
    eos_set = set(eos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    sample = temperature > 0.0
    draws = k if sample else 1  # greedy: one decode, repeated k times
    if sample and temperature < 1e-5:
        raise ValueError(f"temperature {temperature} is too small for sampling; use 0 for greedy decoding")
    # every decoding option set explicitly: the model's generation_config (top_k=50, repetition
    # penalties, ...) must not change the protocol
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sample, num_beams=1, num_return_sequences=1,
        eos_token_id=eos, pad_token_id=pad, use_cache=True, repetition_penalty=1.0, no_repeat_ngram_size=0,
    )
    if sample:
        config.temperature, config.top_p, config.top_k, config.typical_p = float(temperature), float(top_p), 0, 1.0
        if getattr(getattr(model, "generation_config", None), "min_p", None) is not None:
            config.min_p = 0.0
    if stop:
        config.stop_strings = list(stop)

    rows = [(i, j) for i in range(len(ids)) for j in range(draws)]
    rows.sort(key=lambda r: -len(ids[r[0]]))  # stable: a prompt's samples stay together
    results: list[list[Generation | None]] = [[None] * draws for _ in ids]
    left = [draws] * len(ids)
    device = next(model.parameters()).device
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    bar = _progress(len(ids), desc, progress)
    try:
        with torch.inference_mode(), torch.random.fork_rng(devices=fork_devices):
            for b, start in enumerate(range(0, len(rows), batch_size)):
                batch = rows[start:start + batch_size]
                seqs = [ids[i] for i, _ in batch]
                width = max(map(len, seqs))
                input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                attention = torch.zeros((len(seqs), width), dtype=torch.long)
                for r, s in enumerate(seqs):  # left padding
                    input_ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
                    attention[r, width - len(s):] = 1
                if sample:
                    torch.manual_seed(_batch_seed(seed, b))
                extra = {"tokenizer": tokenizer} if stop else {}
                out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                     generation_config=config, **extra)
                new = out[:, width:].tolist()
                done = 0
                for (i, j), toks in zip(batch, new):
                    n, finished = len(toks), False
                    for pos, t in enumerate(toks):
                        if t in eos_set:
                            n, finished = pos + 1, True
                            break
                    kept = toks[:n - 1] if finished else toks[:n]
                    while not finished and stop and kept and kept[-1] == pad:  # a row a stop string ended
                        kept.pop()
                        n -= 1
                    text, by_string = _trim_stop(tokenizer.decode(kept, skip_special_tokens=True), stop)
                    results[i][j] = Generation(text, n, finished or by_string)
                    left[i] -= 1
                    done += left[i] == 0
                bar.update(done)
    finally:
        bar.close()
    return [[row[0]] * k if draws == 1 else list(row) for row in results]  # type: ignore[misc]


def generate(model, tokenizer, prompts: Sequence[Prompt], *, k: int = 1, temperature: float = 0.0,
             top_p: float = 1.0, max_new_tokens: int = 512, batch_size: int = 8, seed: int = 0,
             template: str = "auto", stop: Sequence[str] | None = None, progress: bool = True) -> list[list[str]]:
    """``k`` generated texts per prompt (``result[i][j]``: prompt ``i``, sample ``j``), in the input
    order. Prompts are chat message lists or strings (one user turn), rendered as in training
    (:func:`render_prompts` with ``template``). Temperature 0 is greedy; otherwise sampling with
    ``temperature``/``top_p`` seeded by ``seed``. See :func:`generate_samples`."""
    samples = generate_samples(model, tokenizer, prompts, k=k, temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                               template=template, stop=stop, progress=progress)
    return [[g.text for g in row] for row in samples]


# ---------------------------------------------------------------- loaded backends

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _torch_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return _DTYPES[dtype]


class HFGenerator:
    """A transformers causal LM and its tokenizer behind ``gen(prompts, **options)`` ->
    ``list[list[Generation]]`` (options of :func:`generate_samples`)."""

    name = "hf"

    def __init__(self, model, tokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, spec: str, *, dtype: str = "auto", device: str | None = None,
             trust_remote_code: bool = False) -> "HFGenerator":
        """Load ``spec`` (anything :func:`deft.model.load_model` takes) on ``device`` (default: CUDA
        when available, else CPU) in ``dtype`` (``auto``: bfloat16 on a GPU, float32 on CPU)."""
        from ..model import load_model, load_tokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = _torch_dtype(dtype, device)
        tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)
        model = load_model(spec, dtype=torch_dtype, trust_remote_code=trust_remote_code)
        return cls(model.to(device), tokenizer)

    def __call__(self, prompts: Sequence[Prompt], **options: Any) -> list[list[Generation]]:
        return generate_samples(self.model, self.tokenizer, prompts, **options)


GeneratorFn = Callable[..., list[list[Generation]]]
