"""Batches for the trainer: padding, or packing several examples per row.

Every example is ``{"input_ids", "labels", "weights"?}`` with labels aligned with ``input_ids``
(``-100`` = no loss); the model shifts them. Packed rows carry ``position_ids`` restarting at 0
for each example and no attention mask, from which the HF attention implementations build a
block-diagonal causal mask, so examples in one row never attend to each other. The first label
of every packed example is ``-100`` so that no token predicts across an example boundary.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..data.tokenize import IGNORE_INDEX

__all__ = ["pack_examples", "PaddingCollator", "PackedCollator"]


def _as_dict(ex) -> dict:
    if isinstance(ex, dict):
        return ex
    return {"input_ids": list(ex.input_ids), "labels": list(ex.labels), "weights": ex.weights}


def pack_examples(examples: Sequence, max_length: int) -> list[dict]:
    """Greedy first-fit packing in data order (deterministic): each row holds whole examples of
    total length ``<= max_length``; returns rows with ``input_ids``, ``labels``, ``position_ids``
    and ``weights`` (``None`` when no example has weights)."""
    rows: list[dict] = []
    open_rows: list[dict] = []
    for raw in examples:
        ex = _as_dict(raw)
        n = len(ex["input_ids"])
        if n > max_length:
            raise ValueError(f"an example of {n} tokens exceeds max_length={max_length}; truncate before packing")
        row = next((r for r in open_rows if len(r["input_ids"]) + n <= max_length), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": [], "weights": []}
            rows.append(row)
            open_rows.append(row)
        labels = list(ex["labels"])
        labels[0] = IGNORE_INDEX
        row["input_ids"] += list(ex["input_ids"])
        row["labels"] += labels
        row["position_ids"] += list(range(n))
        w = ex.get("weights")
        row["weights"] += [float(lab != IGNORE_INDEX) for lab in labels] if w is None else list(w)
        row["has_weights"] = row.get("has_weights", False) or w is not None
        open_rows = [r for r in open_rows if len(r["input_ids"]) < max_length]
    for row in rows:
        if not row.pop("has_weights", False):
            row["weights"] = None
    return rows


def _stack(rows: Sequence[dict], pad_token_id: int, *, packed: bool) -> dict:
    """Right-pad rows to the longest: ``input_ids`` (pad id), ``labels`` (-100), and either
    ``attention_mask`` or, for packed rows, ``position_ids`` whose padding restarts at 0 (a
    segment of its own). ``token_weights`` when any row has weights (others: 1 on labels)."""
    longest = max(len(r["input_ids"]) for r in rows)
    n = len(rows)
    ids = torch.full((n, longest), int(pad_token_id), dtype=torch.long)
    labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
    layout = torch.zeros((n, longest), dtype=torch.long)  # attention mask or position ids
    weighted = any(r.get("weights") is not None for r in rows)
    weights = torch.zeros((n, longest)) if weighted else None
    for i, r in enumerate(rows):
        k = len(r["input_ids"])
        ids[i, :k] = torch.tensor(r["input_ids"])
        labels[i, :k] = torch.tensor(r["labels"])
        if packed:
            layout[i, :k] = torch.tensor(r["position_ids"])
            layout[i, k:] = torch.arange(longest - k)
        else:
            layout[i, :k] = 1
        if weighted:
            w = r.get("weights")
            weights[i, :k] = (labels[i, :k] != IGNORE_INDEX).float() if w is None else torch.tensor(w)
    batch = {"input_ids": ids, ("position_ids" if packed else "attention_mask"): layout, "labels": labels}
    if weighted:
        batch["token_weights"] = weights
    return batch


class PaddingCollator:
    """Right-pads examples into ``input_ids``, ``attention_mask``, ``labels`` (and
    ``token_weights`` when any example has weights)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples: Sequence) -> dict:
        return _stack([_as_dict(e) for e in examples], self.pad_token_id, packed=False)


class PackedCollator:
    """Stacks packed rows (from :func:`pack_examples`); shorter rows are padded with a final
    segment whose position ids restart at 0 and whose labels are ignored."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, rows: Sequence[dict]) -> dict:
        return _stack(rows, self.pad_token_id, packed=True)
