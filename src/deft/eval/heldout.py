"""Learning and forgetting measured on tokens, not on a few dozen greedy answers.

All metrics are teacher-forced over the **response tokens** of records (the tokens ``deft train``
puts a loss on, tokenised the same way by :class:`deft.data.RecordTokenizer`). For one token
with label ``y`` and the model's predictive distribution ``P`` (fp32 ``log_softmax`` of the
logits at the previous position):

* ``heldout_nll = mean_t -log P_t[y_t]`` over held-out responses of the training distribution
  (learning: lower is better); ``heldout_mean_p = mean_t P_t[y_t]`` (higher is better);
* ``drift_kl = mean_t KL(P_base,t || P_tuned,t) = mean_t Σ_v P_base,t(v) (log P_base,t(v) -
  log P_tuned,t(v))`` over the response tokens of an out-of-domain set (forgetting: how far the
  tuned model's predictions moved away from the base model's; 0 for identical models);
* ``retained_nll``: the tuned model's ``heldout_nll`` on the **base model's own greedy answers**
  to general prompts (:data:`GENERAL_PROMPTS`): what the base model would say, how likely the
  tuned model still finds it (the paper's Table 5 asks this question of general capability);
* the paper's Figure 1 shares (:func:`deft.analysis.learning.learning_shares`): fractions of the
  held-out tokens whose ``p`` rose (learned) or fell (forgotten) by more than 0.01 from the base
  model to the tuned one, split by the base model's confidence (``p_base >= 0.5``).

The out-of-domain set needs no download: :func:`general_records` answers the shipped prompts with
the base model (greedy) and the recipe caches the result (:mod:`deft.recipes.compare`).
Memory: the ``[B, T, V]`` logits of one batch per model (``batch_size`` records).
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import torch

__all__ = ["GENERAL_PROMPTS", "token_logprobs", "heldout_nll", "heldout_mean_p", "drift_kl", "retained_nll",
           "heldout_metrics", "general_records", "read_records",
           "check_heldout_inputs", "eval_heldout"]

# General prompts unrelated to any training task of the paper (math, medicine, letter puzzles):
# everyday knowledge, writing and reasoning in short answers.
GENERAL_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the ocean.",
    "Name three colours of the rainbow.",
    "How many days are there in a week?",
    "Give a synonym for the word 'happy'.",
    "What do bees make?",
    "Describe a cat in one sentence.",
    "What is the opposite of 'cold'?",
    "Why do people drink water?",
    "Suggest a name for a pet dog.",
    "What season comes after winter?",
    "Write a short greeting for a friend.",
    "What is the largest planet in the solar system?",
    "How do you make a cup of tea?",
    "Name a fruit that is yellow.",
    "What is the main language spoken in Spain?",
    "Give one tip for sleeping well.",
    "What does a thermometer measure?",
    "Write a haiku about autumn.",
    "What is the boiling point of water in Celsius?",
    "Who wrote 'Romeo and Juliet'?",
    "Explain what a library is.",
    "What animal is known as the king of the jungle?",
    "List two things you can do on a rainy day.",
)


def read_records(records) -> list[tuple[str, dict]]:
    """``[(where, record)]`` from a record file path or a sequence of record dicts; an invalid
    record raises its located :class:`deft.data.RecordError`."""
    from ..data import RecordError, iter_records, normalize_record

    if isinstance(records, (str, bytes)) or hasattr(records, "__fspath__"):
        rows = []
        for where, rec in iter_records(records):
            if isinstance(rec, RecordError):
                raise rec
            rows.append((where, rec))
    else:
        rows = []
        for i, rec in enumerate(records):
            try:
                rows.append((f"record {i}", normalize_record(rec)))
            except RecordError as err:
                raise err.at(f"record {i}") from None
    if not rows:
        raise ValueError(f"{records if isinstance(records, str) else 'records'}: no records to measure")
    return rows


def _batches(tokenizer, records, *, batch_size: int, max_length: int, template: str) -> Iterator[dict]:
    from ..data import RecordTokenizer, collate

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    view = RecordTokenizer(tokenizer, template=template, max_length=max_length)
    examples = []
    for where, rec in read_records(records):
        ex = view(rec, where)
        if ex is not None and ex.num_loss_tokens > 0:
            examples.append(ex)
    if not examples:
        raise ValueError(f"no record has response tokens after tokenisation (max_length={max_length})")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(examples), batch_size):
        yield collate(examples[start:start + batch_size], pad)


def _response_log_probs(model, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log P [N, V] fp32, labels [N])`` at the ``N`` response positions of a batch: position
    ``t``'s logits predict ``labels[t + 1]`` (the HF causal-LM convention)."""
    device = next(model.parameters()).device
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
    labels = batch["labels"][:, 1:].to(device)
    keep = labels != -100
    return torch.log_softmax(logits[:, :-1][keep].float(), dim=-1), labels[keep]


def token_logprobs(model, tokenizer, records, *, batch_size: int = 4, max_length: int = 1024,
                   template: str = "auto") -> torch.Tensor:
    """``log P[y]`` ``[N]`` (fp32, CPU) of every response token of ``records`` (a path or record
    dicts), in record order."""
    out = []
    with torch.no_grad():
        for batch in _batches(tokenizer, records, batch_size=batch_size, max_length=max_length, template=template):
            logp, labels = _response_log_probs(model, batch)
            out.append(logp.gather(1, labels[:, None]).squeeze(1).cpu())
    return torch.cat(out)


def heldout_nll(model, tokenizer, records, **kw) -> float:
    """Mean ``-log P[y]`` over the response tokens of ``records`` (nats per token)."""
    return float(-token_logprobs(model, tokenizer, records, **kw).double().mean())


def heldout_mean_p(model, tokenizer, records, **kw) -> float:
    """Mean target probability ``P[y]`` over the response tokens of ``records``."""
    return float(token_logprobs(model, tokenizer, records, **kw).double().exp().mean())


def retained_nll(model, tokenizer, base_answers, **kw) -> float:
    """``heldout_nll`` of ``model`` on ``base_answers``: records whose responses are the base
    model's own greedy answers (:func:`general_records`)."""
    return heldout_nll(model, tokenizer, base_answers, **kw)


def drift_kl(base_model, model, tokenizer, records, *, batch_size: int = 4, max_length: int = 1024,
             template: str = "auto") -> float:
    """Mean per-token ``KL(P_base || P_model)`` (nats) over the response tokens of ``records``;
    both models must share ``tokenizer``'s vocabulary."""
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in _batches(tokenizer, records, batch_size=batch_size, max_length=max_length, template=template):
            base_logp, _ = _response_log_probs(base_model, batch)
            logp, _ = _response_log_probs(model, batch)
            if base_logp.shape != logp.shape:
                raise ValueError(f"the base model's vocabulary ({base_logp.shape[-1]}) differs from the model's "
                                 f"({logp.shape[-1]}); drift_kl needs one tokenizer")
            logp = logp.to(base_logp.device)
            # P log P is 0 where P is 0 (a -inf log-prob); xlogy-style masking keeps that exact
            kl = (base_logp.exp() * (base_logp - logp)).nan_to_num(0.0).sum(-1)
            total += float(kl.double().sum())
            count += kl.numel()
    return total / count


def heldout_metrics(model, tokenizer, records, base_model=None, *, ood_records=None, batch_size: int = 4,
                    max_length: int = 1024, template: str = "auto", threshold: float = 0.01) -> dict:
    """Learning and forgetting metrics of ``model`` (see the module docstring).

    Args:
        records: held-out records of the training distribution (path or record dicts).
        base_model: the model before fine-tuning (same tokenizer); adds the Figure 1 shares
            (``learned``, ``forgotten``, ``learned_high``, ``learned_low``, ``forgotten_high``,
            ``forgotten_low``, fractions of the held-out tokens) and, with ``ood_records``, ``drift_kl``.
        ood_records: out-of-domain records whose responses are the base model's greedy answers
            (:func:`general_records`); gives ``retained_nll`` (and ``drift_kl`` with ``base_model``).

    Returns:
        ``{"heldout_nll", "heldout_mean_p", "heldout_tokens", ...}`` as floats / ints.
    """
    from ..analysis.learning import learning_shares

    kw = dict(batch_size=batch_size, max_length=max_length, template=template)
    logp = token_logprobs(model, tokenizer, records, **kw).double()
    out = {"heldout_nll": float(-logp.mean()), "heldout_mean_p": float(logp.exp().mean()),
           "heldout_tokens": int(logp.numel())}
    if base_model is not None:
        base_logp = token_logprobs(base_model, tokenizer, records, **kw).double()
        shares = learning_shares(base_logp.exp(), logp.exp(), threshold=threshold)
        out.update({k: shares[k] for k in ("learned", "forgotten", "learned_high", "learned_low",
                                           "forgotten_high", "forgotten_low")})
    if ood_records is not None:
        ood = token_logprobs(model, tokenizer, ood_records, **kw).double()
        out["retained_nll"] = float(-ood.mean())
        out["ood_tokens"] = int(ood.numel())
        if base_model is not None:
            out["drift_kl"] = drift_kl(base_model, model, tokenizer, ood_records, **kw)
    return out


def general_records(model, tokenizer, prompts: Sequence[str] = GENERAL_PROMPTS, *, max_new_tokens: int = 48,
                    batch_size: int = 8, template: str = "auto") -> list[dict]:
    """``[{"prompt", "response"}]``: ``model``'s greedy answers to ``prompts`` (the out-of-domain
    set of ``drift_kl`` / ``retained_nll``). Empty answers are dropped."""
    from .generate import generate

    texts = generate(model, tokenizer, list(prompts), k=1, temperature=0.0, max_new_tokens=max_new_tokens,
                     batch_size=batch_size, template=template, progress=False)
    return [{"prompt": q, "response": row[0]} for q, row in zip(prompts, texts) if row[0].strip()]



def check_heldout_inputs(cfg) -> None:
    """``deft eval``'s ``--heldout`` file, read and validated before any model loads (a bad record
    raises its ``FILE:LINE`` error)."""
    if cfg.heldout:
        read_records(cfg.heldout)


def eval_heldout(cfg, model, tokenizer) -> dict:
    """The ``"heldout"`` entry of ``deft eval``'s results (:class:`deft.eval.config.EvalConfig`):
    :func:`heldout_metrics` of ``model`` on ``cfg.heldout``; with ``cfg.base_model`` the Figure 1
    shares, and with ``cfg.forgetting`` ``drift_kl`` / ``retained_nll`` on the base model's greedy
    answers to :data:`GENERAL_PROMPTS` (``ood_answers``: how many it answered). The base model is
    loaded on ``model``'s device and dtype."""
    from ..model import load_model

    base = None
    if cfg.base_model:
        param = next(model.parameters())
        base = load_model(cfg.base_model, dtype=param.dtype,
                          trust_remote_code=cfg.trust_remote_code).to(param.device).eval()
    ood = general_records(base, tokenizer, template=cfg.template) if cfg.forgetting else None
    kw = dict(template=cfg.template)
    if cfg.heldout:
        out = heldout_metrics(model, tokenizer, cfg.heldout, base_model=base, ood_records=ood or None, **kw)
    else:
        out = {}
        if ood:
            out = {"retained_nll": retained_nll(model, tokenizer, ood, **kw),
                   "drift_kl": drift_kl(base, model, tokenizer, ood, **kw)}
    if cfg.forgetting:
        out["ood_answers"] = len(ood)
    return out
