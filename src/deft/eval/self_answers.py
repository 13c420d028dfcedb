"""A model's own answers as training records, kept only when they are complete and correct.

The paper's model-strong regime trains on data the base model already predicts well. Its own greedy
answers are such data, but only two kinds of them carry a signal: an answer **cut** by the token
budget ends where the budget did, and the end-of-turn token appended after it in training is one the
model would not have written (it then carries much of the loss); a **wrong** answer teaches the model
its own mistake. :func:`keep_self_answers` sorts generations into

* ``cut`` — generation did not stop on its own (no EOS / end-of-turn token before ``max_new_tokens``;
  :attr:`deft.eval.generate.Generation.finished` is False),
* ``empty`` — it stopped, but with no text,
* ``wrong`` — complete, but the task's own scorer gives it less than ``min_score``,
* ``correct`` — complete and correct: a record whose ``response`` is the model's text,

in that order (a cut answer is not scored). :func:`rg_record_score` scores a record from a
reasoning-gym source (``deft data rg:<task>`` / ``figfont``) with the project's ``rg:<task>`` scorer
(:func:`deft.eval.scorers_text.score_rg`: the last ``<answer>`` tag or the stripped text, screened
before tasks that evaluate it). :func:`self_answer_set` draws records until ``n`` are kept.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional, Sequence

__all__ = ["COUNT_KEYS", "rg_record_score", "record_prompt", "keep_self_answers", "self_answer_set"]

COUNT_KEYS = ("drawn", "cut", "empty", "wrong", "correct", "kept")


def _rg_task(record: Mapping) -> str:
    """The reasoning-gym dataset of a generated record (its metadata, else its ``task`` label)."""
    info = (record.get("metadata") or {}).get("reasoning_gym") or {}
    if info.get("task"):
        return str(info["task"])
    label = str(record.get("task", ""))
    if label == "figfont":
        return "figlet_font"
    if label.startswith("rg:"):
        return label[3:]
    raise ValueError(f"record {record.get('id', '')!r}: not from a reasoning-gym source (no metadata.reasoning_gym "
                     "or task 'rg:<task>'); pass a score function for other records")


def rg_record_score(record: Mapping, text: str) -> float:
    """Score ``text`` as the answer to a reasoning-gym record with the ``rg:<task>`` scorer, in [0, 1];
    the entry it scores against is the record's question, ``answer`` and metadata."""
    from .scorers_text import score_rg

    if "answer" not in record:
        raise ValueError(f"record {record.get('id', '')!r}: no 'answer' to score against")
    meta = {k: v for k, v in dict(record.get("metadata") or {}).items() if k != "reasoning_gym"}
    entry = {"question": record.get("prompt"), "answer": record["answer"], "metadata": meta}
    return score_rg(_rg_task(record), text, str(record["answer"]), entry=entry)


def record_prompt(record: Mapping) -> list[dict]:
    """The conversation a record's response answers: its ``messages`` without a final assistant turn,
    or its ``system`` (if any) and ``prompt`` as messages."""
    if record.get("messages"):
        msgs = [dict(m) for m in record["messages"]]
        return msgs[:-1] if msgs[-1].get("role") == "assistant" else msgs
    msgs = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    return msgs + [{"role": "user", "content": record["prompt"]}]


def keep_self_answers(records: Sequence[Mapping], generations: Sequence, *,
                      score: Callable[[Mapping, str], float] = rg_record_score,
                      min_score: float = 1.0) -> tuple[list[dict], dict]:
    """``(kept records, counts)`` of one generation per record (see the module docstring): a kept
    record is the input record with ``response`` set to the generated text (its ``answer``, if any,
    stays the task's reference) and ``source: "self-answers"``; ``counts`` has ``drawn``, ``cut``,
    ``empty``, ``wrong``, ``correct`` and ``kept`` (= ``correct`` here). ``generations`` are
    :class:`deft.eval.generate.Generation` objects (``text``, ``finished``)."""
    if len(records) != len(generations):
        raise ValueError(f"{len(records)} records but {len(generations)} generations")
    counts = dict.fromkeys(COUNT_KEYS, 0)
    kept = []
    for rec, gen in zip(records, generations):
        counts["drawn"] += 1
        if not gen.finished:
            counts["cut"] += 1
        elif not gen.text.strip():
            counts["empty"] += 1
        elif score(rec, gen.text) < min_score:
            counts["wrong"] += 1
        else:
            counts["correct"] += 1
            out = {k: v for k, v in rec.items() if k != "messages"}
            if rec.get("messages"):
                out["messages"] = record_prompt(rec) + [{"role": "assistant", "content": gen.text}]
            else:
                out["response"] = gen.text
            kept.append(dict(out, source="self-answers"))
    counts["kept"] = len(kept)
    return kept, counts


def self_answer_set(model, tokenizer, records: Iterable[Mapping], n: int, *, max_new_tokens: int = 256,
                    batch_size: int = 8, score: Callable[[Mapping, str], float] = rg_record_score,
                    min_score: float = 1.0, template: str = "auto",
                    log: Optional[Callable[[str], None]] = None) -> tuple[list[dict], dict]:
    """Answer ``records`` greedily with ``model``, ``batch_size`` at a time in their order, and keep
    the complete and correct answers (:func:`keep_self_answers`) until ``n`` are kept or the records
    run out. Returns ``(at most n records, counts)``: the counts cover every record drawn, and
    ``kept`` is the number returned (``correct`` may exceed it by the last batch's surplus)."""
    from .generate import generate_samples

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    counts = dict.fromkeys(COUNT_KEYS, 0)
    kept: list[dict] = []
    source = iter(records)
    while len(kept) < n:
        batch = [rec for _, rec in zip(range(batch_size), source)]
        if not batch:
            break
        gens = generate_samples(model, tokenizer, [record_prompt(r) for r in batch], k=1, temperature=0.0,
                                max_new_tokens=max_new_tokens, batch_size=batch_size, template=template,
                                progress=False)
        more, c = keep_self_answers(batch, [row[0] for row in gens], score=score, min_score=min_score)
        kept += more
        for key in COUNT_KEYS:
            counts[key] += c[key]
        if log is not None:
            log(f"drawn {counts['drawn']}: kept {min(len(kept), n)}/{n} (cut {counts['cut']}, empty "
                f"{counts['empty']}, wrong {counts['wrong']})")
    counts["kept"] = min(len(kept), n)
    return kept[:n], counts
