"""Collect per-token statistics of a model on the response tokens of a record file, without training.

For every loss token (the response tokens of ``deft data`` records, exactly the tokens the
trainer puts a loss on) the model's own training forward, patched by
:func:`deft.model.fused_forward.patch_fused_loss`, gives the statistics of
:func:`deft.fused_token_loss` (``p``, ``gate``, ``entropy``, ``focus``, ``mask``); this module
only batches records, calls ``model(input_ids, attention_mask, labels)`` under ``torch.no_grad``
and keeps the loss tokens. The hidden-state extraction and the label shift (position ``t``
predicts ``labels[t + 1]``) are the patched forward's, so the statistics are those of training.
The ``[tokens, V]`` logits are never held.

Output: a statistics dict as described in :mod:`deft.analysis.token_stats` (``p``, ``logp``,
``entropy``, ``focus``, ``gate/<spec>``, ``example``, ``token_id`` as 1-D tensors ``[N]`` over the
``N`` loss tokens, and ``meta``). A pass with the ``deft`` objective gives ``p`` / ``entropy`` /
``focus`` (and DEFT's gate); every other gate objective costs one more forward pass.
"""

from __future__ import annotations

import sys

import contextlib
import random
from typing import Iterable, Optional

import torch

from ..analysis.token_stats import TINY, TOKEN_KEYS

__all__ = ["DEFAULT_GATES", "collect_token_stats", "sample_records", "patched_for"]

DEFAULT_GATES = ("deft", "eaft")


def sample_records(path, n: Optional[int] = None, seed: int = 0, *,
                   skip_invalid: bool = False) -> list[tuple[int, str, dict]]:
    """``[(index, where, record)]`` for the valid records of ``path`` (:func:`deft.data.iter_records`),
    or a uniform sample of ``n`` of them drawn with ``random.Random(seed)``, kept in file order.

    An invalid row raises ``ValueError`` naming it (``FILE:LINE: what is wrong``), as ``deft train``
    does, unless ``skip_invalid`` (then it is skipped); a file with no valid record always raises.
    """
    from ..data import RecordError, iter_records

    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of records, got {n}")
    rows, bad = [], []
    for i, (where, rec) in enumerate(iter_records(path)):
        if isinstance(rec, RecordError):
            if not skip_invalid:
                raise ValueError(f"{rec} (pass --skip-invalid to leave invalid records out)")
            bad.append(str(rec))
            continue
        rows.append((i, where, rec))
    if not rows:
        first = f" (first problem: {bad[0]})" if bad else ""
        raise ValueError(f"{path}: no valid record{first}")
    if n is not None and n < len(rows):
        keep = sorted(random.Random(seed).sample(range(len(rows)), n))
        rows = [rows[k] for k in keep]
    return rows


@contextlib.contextmanager
def patched_for(model, objective: str, chunk_size: Optional[int] = None):
    """Patch ``model``'s forward to return ``objective``'s fused loss and statistics for the
    duration of the block; an earlier patch (e.g. a trainer's) is restored afterwards."""
    from ..model.fused_forward import is_patched, patch_fused_loss, unpatch_fused_loss
    from ..model.parts import unwrap

    base = unwrap(model)
    previous = getattr(base, "_deft_config", None) if is_patched(base) else None
    patch_fused_loss(model, objective, chunk_size=chunk_size)
    try:
        yield model
    finally:
        if previous is None:
            unpatch_fused_loss(model)
        else:  # put the earlier configuration back as it was
            object.__setattr__(base, "_deft_config", previous)


def _device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def _tokenized(tokenizer, rows, *, max_length, template, truncation):
    """``([(record index, TokenizedExample)], skipped)``: records with at least one loss token."""
    from ..data import RecordError, RecordTokenizer

    view = RecordTokenizer(tokenizer, template=template, max_length=max_length, truncation=truncation)
    examples, skipped = [], 0
    for index, where, rec in rows:
        try:
            ex = view(rec, where)
        except RecordError:
            ex = None
        if ex is None or ex.num_loss_tokens == 0:
            skipped += 1
            continue
        examples.append((index, ex))
    return examples, skipped


def _check_gates(gates: Iterable[str]) -> list[str]:
    from ..objectives import parse_objective

    specs = []
    for g in gates:
        obj = parse_objective(g)
        if obj.needs - {"batch"}:
            raise ValueError(f"gate '{obj.spec}' needs {', '.join(sorted(obj.needs - {'batch'}))}; "
                             "token statistics record gates of objectives that need only the model")
        specs.append(obj.spec)
    return specs


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar over examples (elapsed and time left), or a silent stand-in."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="probe", unit="example", disable=not enabled, dynamic_ncols=True,
                file=sys.stderr)


def collect_token_stats(
    model,
    tokenizer,
    records_path,
    *,
    n: Optional[int] = None,
    batch_size: int = 8,
    max_length: int = 1024,
    template: str = "auto",
    truncation: str = "left",
    seed: int = 0,
    gates: Iterable[str] = DEFAULT_GATES,
    chunk_size: Optional[int] = None,
    log=None,
    progress: bool = False,
    skip_invalid: bool = False,
) -> dict:
    """Per-token statistics of ``model`` on the response tokens of ``records_path``.

    Args:
        model: an HF causal LM (any device; run as is, in eval mode).
        tokenizer: its tokenizer (with a pad token, as :func:`deft.model.load_tokenizer` gives).
        records_path: a record file of ``deft data`` (JSONL / JSON / Parquet / datasets dir).
        n: number of records to sample (``None``: all), drawn deterministically with ``seed``.
        batch_size, max_length, template, truncation: batching and tokenisation, as in
            ``deft train`` (:class:`deft.data.RecordTokenizer`).
        gates: objective specs whose per-token gate to record (the ``deft`` pass is always
            made; one more forward pass for each other objective).
        chunk_size: rows per chunk of the fused loss (``None``: automatic).
        progress: show a progress bar with the time left (stderr).
        skip_invalid: leave invalid records out instead of stopping at the first one.

    Returns:
        ``{key: 1-D tensor [N]}`` for :data:`~deft.analysis.token_stats.TOKEN_KEYS` and
        ``gate/<spec>`` (N = number of response tokens, in record order then position order),
        plus ``meta`` (a dict).
    """
    from ..data import collate

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    specs = _check_gates(gates)
    rows = sample_records(records_path, n, seed, skip_invalid=skip_invalid)
    examples, skipped = _tokenized(tokenizer, rows, max_length=max_length, template=template,
                                   truncation=truncation)
    if not examples:
        raise ValueError(f"{records_path}: none of the {len(rows)} sampled records has response tokens "
                         f"after tokenisation (max_length={max_length})")
    # the deft pass gives p, entropy and focus (every objective's statistics have p and entropy, not all focus)
    passes = ["deft", *(s for s in specs if s != "deft")]
    device = _device_of(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    parts: dict[str, list] = {k: [] for k in (*TOKEN_KEYS, *(f"gate/{s}" for s in specs))}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _progress_bar(len(examples), progress) as bar:
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                batch = collate([ex for _, ex in chunk], pad)
                ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                labels = batch["labels"].to(device)
                for i, spec in enumerate(passes):
                    with patched_for(model, spec, chunk_size):
                        st = model(input_ids=ids, attention_mask=mask, labels=labels).stats
                    keep = st["mask"]
                    if i == 0:
                        p = st["p"][keep].float()
                        parts["p"].append(p.cpu())
                        parts["logp"].append(p.clamp_min(TINY).log().cpu())
                        parts["entropy"].append(st["entropy"][keep].float().cpu())
                        parts["focus"].append(st["focus"][keep].float().cpu())
                        # the statistics' mask is aligned with the shifted labels (position t -> t + 1)
                        targets = labels[:, 1:]
                        index = torch.tensor([j for j, _ in chunk], device=device).unsqueeze(1).expand_as(targets)
                        parts["example"].append(index[keep].to(torch.int64).cpu())
                        parts["token_id"].append(targets[keep].to(torch.int64).cpu())
                    if spec in specs:
                        parts[f"gate/{spec}"].append(st["gate"][keep].float().cpu())
                bar.update(len(chunk))
                if log is not None:
                    log(f"token stats: {min(start + batch_size, len(examples))}/{len(examples)} examples")
    finally:
        model.train(was_training)
    result = {k: torch.cat(v) for k, v in parts.items()}
    result["meta"] = {
        "data": str(records_path),
        "model": str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__),
        "records_sampled": len(rows), "examples": len(examples), "skipped": skipped,
        "tokens": int(result["p"].numel()), "n": n, "seed": seed, "max_length": max_length,
        "template": template, "truncation": truncation, "gates": specs,
    }
    return result
