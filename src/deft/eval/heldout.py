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

**Token classes.** Every scored response token is either ``content`` (it carries text of the
response) or ``end`` (end-of-turn / template: what the template adds around the response text,
such as the tokenizer's EOS, ``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>`` or a closing tag).
Nothing is hard-coded; the rule (:func:`end_token_flags`) compares the response text with its
tokenisation in context:

* chat templates, fast tokenizers: the templated conversation is tokenised with character offsets
  and the response text (as written, else stripped: templates often trim it) is located after the
  prompt; a response token is ``content`` when its characters overlap the response text, ``end``
  otherwise (so a template's closing tokens, special or not, are ``end``, and so is text it writes
  before the response inside the turn; a token that merges the last characters of the response
  with template text counts as ``content``);
* plain templates: the response is tokenised alone and deft appends EOS, the one ``end`` token;
* otherwise (a slow tokenizer without offsets, or a template that rewrites the response text so
  that it cannot be found): the special tokens (:func:`deft.data.special_token_ids`) that close
  the response are ``end``, the rest ``content``.

Truncation keeps a prefix of the response tokens, so a truncated record keeps the flags of that
prefix. The metrics of each class (:func:`deft.analysis.learning.class_metrics`) are reported
beside the all-token ones, and **content is the headline**: end-of-turn tokens are a large share
of short responses (32 of 108 tokens of 32 FigFont answers under SmolLM2's template) and are
learned first, so on all-token metrics an objective that only learns to stop can look as good as
one that learns the answers:

* ``content_nll``, ``content_mean_p``, ``content_tokens``: the metrics above on content tokens;
* ``end_nll``, ``end_mean_p``, ``end_tokens``: on end-of-turn / template tokens;
* with a base model, ``content_learned`` and ``content_forgotten``: the Figure 1 shares among the
  content tokens (fractions of the content tokens).

The out-of-domain set needs no download: :func:`general_records` answers the shipped prompts with
the base model (greedy) and the recipe caches the result (:mod:`deft.recipes.compare`).
Memory: the ``[B, T, V]`` logits of one batch per model (``batch_size`` records).
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import torch

__all__ = ["GENERAL_PROMPTS", "token_logprobs", "token_logprobs_by_class", "token_logprobs_by_record",
           "content_by_record", "end_token_flags", "heldout_nll",
           "heldout_mean_p", "drift_kl", "retained_nll", "heldout_metrics", "general_records", "read_records",
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


def _chat_end_flags(tokenizer, messages: list[dict], full) -> list[bool] | None:
    """``end`` flags of the response tokens of ``full`` (the untruncated chat-templated example) by
    character offsets (see the module docstring); ``None`` when offsets cannot tell."""
    from ..data import IGNORE_INDEX

    if not getattr(tokenizer, "is_fast", False):
        return None
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) != list(full.input_ids):  # not the text the view tokenised: no offsets to trust
        return None
    offsets = enc["offset_mapping"]
    span = [i for i, lab in enumerate(full.labels) if lab != IGNORE_INDEX]
    content = messages[-1]["content"]
    if not content:
        return [True] * len(span)
    # the response as written, else stripped (templates often trim it)
    for answer in dict.fromkeys((content, content.strip())):
        start = text.find(answer, offsets[span[0]][0]) if answer else -1
        if start >= 0:
            break
    else:  # the template rewrote the response text
        return None
    stop = start + len(answer)
    return [not (offsets[i][0] < stop and offsets[i][1] > start) for i in span]


def _closing_special_flags(full, special: set) -> list[bool]:
    """``end`` flags by the fallback rule: the special tokens that close the response."""
    from ..data import IGNORE_INDEX

    ids = [t for t, lab in zip(full.input_ids, full.labels) if lab != IGNORE_INDEX]
    content = len(ids)
    while content > 0 and ids[content - 1] in special:
        content -= 1
    return [i >= content for i in range(len(ids))]


def end_token_flags(tokenizer, record, *, template: str = "auto", view=None) -> list[bool]:
    """One flag per response token of ``record`` (untruncated, in order): ``True`` for an
    end-of-turn / template token, ``False`` for a content token (the rule of the module
    docstring). ``view``: a :class:`deft.data.RecordTokenizer` without ``max_length`` to reuse.
    A truncated record's response tokens are a prefix of these, and so are its flags."""
    from ..data import RecordTokenizer, record_messages, special_token_ids

    view = view or RecordTokenizer(tokenizer, template=template)
    full = view(record)
    n = full.num_loss_tokens
    if view.template != "chat":  # the response tokenised alone, then EOS (deft.data.tokenize)
        return [i == n - 1 for i in range(n)]
    messages = record_messages(record)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    flags = _chat_end_flags(tokenizer, messages[:last + 1], full)
    return flags if flags is not None else _closing_special_flags(full, special_token_ids(tokenizer))


def _examples(tokenizer, records, *, max_length: int, template: str, classes: bool) -> list[tuple]:
    """``[(example, end flags or None)]`` of the records with response tokens after tokenisation."""
    from ..data import RecordTokenizer

    view = RecordTokenizer(tokenizer, template=template, max_length=max_length)
    full = RecordTokenizer(tokenizer, template=template) if classes else None
    out = []
    for where, rec in read_records(records):
        ex = view(rec, where)
        if ex is not None and ex.num_loss_tokens > 0:
            flags = end_token_flags(tokenizer, rec, view=full)[:ex.num_loss_tokens] if classes else None
            out.append((ex, flags))
    if not out:
        raise ValueError(f"no record has response tokens after tokenisation (max_length={max_length})")
    return out


def _batches(tokenizer, records, *, batch_size: int, max_length: int, template: str,
             classes: bool = False) -> Iterator[tuple[dict, torch.Tensor | None]]:
    """``(collated batch, end flags [N] bool or None)`` per ``batch_size`` records; the flags
    follow the batch's response positions in row-major order, as :func:`_response_log_probs`."""
    from ..data import collate

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    examples = _examples(tokenizer, records, max_length=max_length, template=template, classes=classes)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        flags = torch.tensor([f for _, fl in chunk for f in fl], dtype=torch.bool) if classes else None
        yield collate([ex for ex, _ in chunk], pad), flags


def _response_log_probs(model, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log P [N, V] fp32, labels [N])`` at the ``N`` response positions of a batch: position
    ``t``'s logits predict ``labels[t + 1]`` (the HF causal-LM convention)."""
    device = next(model.parameters()).device
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
    labels = batch["labels"][:, 1:].to(device)
    keep = labels != -100
    return torch.log_softmax(logits[:, :-1][keep].float(), dim=-1), labels[keep]


def token_logprobs_by_record(model, tokenizer, records, *, batch_size: int = 4, max_length: int = 1024,
                             template: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log P[y] [N] fp32, is_end [N] bool, record [N] int64)``, on the CPU, of every response
    token of ``records`` (a path or record dicts) in record order: :func:`token_logprobs_by_class`
    and beside it the index of each token's record among the records that have response tokens
    (``0 .. R-1``, in file order)."""
    out, flags, owner = [], [], []
    first = 0
    with torch.no_grad():
        for batch, is_end in _batches(tokenizer, records, batch_size=batch_size, max_length=max_length,
                                      template=template, classes=True):
            logp, labels = _response_log_probs(model, batch)
            out.append(logp.gather(1, labels[:, None]).squeeze(1).cpu())
            flags.append(is_end)
            per_row = (batch["labels"][:, 1:] != -100).sum(1)  # response tokens of each record, row-major
            owner.append(torch.repeat_interleave(torch.arange(first, first + len(per_row)), per_row))
            first += len(per_row)
    logp, is_end, record = torch.cat(out), torch.cat(flags), torch.cat(owner)
    if not logp.shape == is_end.shape == record.shape:  # both follow the batch's label positions: else a bug
        raise RuntimeError(f"{logp.numel()} scored tokens but {is_end.numel()} token classes and {record.numel()} "
                           "record indices")
    return logp, is_end, record


def token_logprobs_by_class(model, tokenizer, records, *, batch_size: int = 4, max_length: int = 1024,
                            template: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """``(log P[y] [N] fp32, is_end [N] bool)``, both on the CPU, of every response token of
    ``records`` (a path or record dicts) in record order: :func:`token_logprobs` and beside it the
    token classes of the module docstring (``True``: end-of-turn / template, ``False``: content)."""
    logp, is_end, _ = token_logprobs_by_record(model, tokenizer, records, batch_size=batch_size,
                                               max_length=max_length, template=template)
    return logp, is_end


def content_by_record(logp: torch.Tensor, is_end: torch.Tensor, record: torch.Tensor) -> dict:
    """Per-record sums over the **content** tokens, the unit a bootstrap over held-out records
    resamples: ``{"content_logp_sum", "content_p_sum", "content_tokens"}``, lists of length ``R``
    (records with response tokens, in order; a record without content tokens has sums 0 and count
    0). ``content_nll = -Σ_r logp_sum_r / Σ_r tokens_r`` and ``content_mean_p = Σ_r p_sum_r /
    Σ_r tokens_r`` recover the pooled metrics."""
    n = int(record.max()) + 1 if record.numel() else 0
    content = ~is_end.bool()
    idx = record[content]
    lp = logp.double()[content]
    sums = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, lp)
    psums = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, lp.exp())
    counts = torch.zeros(n, dtype=torch.int64).index_add_(0, idx, torch.ones_like(idx))
    return {"content_logp_sum": sums.tolist(), "content_p_sum": psums.tolist(), "content_tokens": counts.tolist()}


def token_logprobs(model, tokenizer, records, *, batch_size: int = 4, max_length: int = 1024,
                   template: str = "auto") -> torch.Tensor:
    """``log P[y]`` ``[N]`` (fp32, CPU) of every response token of ``records`` (a path or record
    dicts), in record order."""
    out = []
    with torch.no_grad():
        for batch, _ in _batches(tokenizer, records, batch_size=batch_size, max_length=max_length, template=template):
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
        for batch, _ in _batches(tokenizer, records, batch_size=batch_size, max_length=max_length,
                                 template=template):
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
                    max_length: int = 1024, template: str = "auto", threshold: float = 0.01,
                    per_record: bool = False) -> dict:
    """Learning and forgetting metrics of ``model`` (see the module docstring).

    Args:
        records: held-out records of the training distribution (path or record dicts).
        base_model: the model before fine-tuning (same tokenizer); adds the Figure 1 shares
            (``learned``, ``forgotten``, ``learned_high``, ``learned_low``, ``forgotten_high``,
            ``forgotten_low``, fractions of the held-out tokens; ``content_learned`` and
            ``content_forgotten``, fractions of the content tokens) and, with ``ood_records``,
            ``drift_kl``.
        ood_records: out-of-domain records whose responses are the base model's greedy answers
            (:func:`general_records`); gives ``retained_nll`` (and ``drift_kl`` with ``base_model``).
        per_record: add ``"per_record"``: the content tokens' sums per held-out record
            (:func:`content_by_record`), for a bootstrap over records.

    Returns:
        ``{"content_nll", "content_mean_p", "content_tokens", "end_nll", "end_mean_p", "end_tokens",
        "heldout_nll", "heldout_mean_p", "heldout_tokens", ...}`` as floats / ints; a class
        without tokens has ``None`` for its NLL and mean p.
    """
    from ..analysis.learning import class_metrics, learning_shares

    kw = dict(batch_size=batch_size, max_length=max_length, template=template)
    logp, is_end, record = token_logprobs_by_record(model, tokenizer, records, **kw)
    logp = logp.double()
    base_logp = token_logprobs(base_model, tokenizer, records, **kw).double() if base_model is not None else None
    out = class_metrics(logp, is_end, base_logp, threshold=threshold)  # content first: the headline
    out.update({"heldout_nll": float(-logp.mean()), "heldout_mean_p": float(logp.exp().mean()),
                "heldout_tokens": int(logp.numel())})
    if base_logp is not None:
        shares = learning_shares(base_logp.exp(), logp.exp(), threshold=threshold)
        out.update({k: shares[k] for k in ("learned", "forgotten", "learned_high", "learned_low",
                                           "forgotten_high", "forgotten_low")})
    if per_record:
        out["per_record"] = content_by_record(logp, is_end, record)
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
