"""Batches for the trainer: one collator for padded and packed rows.

Every example is ``{"input_ids", "labels", "weights"?}`` (the columns of
:func:`deft.data.tokenize_to_dataset`; a :class:`~deft.data.RecordTokenizer` example object works
too) with labels aligned with ``input_ids`` (``-100`` = no loss); the model shifts them. Per-token
weights arrive under ``weights`` and leave the collator under ``token_weights`` (the keyword of the
patched forward, :func:`deft.model.fused_forward.patch_fused_loss`).

Packed rows (from :func:`pack_examples`) carry ``position_ids`` restarting at 0 for each example
and no attention mask, from which the HF attention implementations build a block-diagonal causal
mask, so examples in one row never attend to each other. The first label of every packed example
is ``-100`` so that no token predicts across an example boundary.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..data.tokenize import IGNORE_INDEX

__all__ = ["Collator", "PaddingCollator", "pack_examples"]


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
            row = {"input_ids": [], "labels": [], "position_ids": [], "weights": [], "has_weights": False}
            rows.append(row)
            open_rows.append(row)
        labels = list(ex["labels"])
        labels[0] = IGNORE_INDEX
        row["input_ids"] += list(ex["input_ids"])
        row["labels"] += labels
        row["position_ids"] += list(range(n))
        w = ex.get("weights")
        row["weights"] += [float(lab != IGNORE_INDEX) for lab in labels] if w is None else list(w)
        row["has_weights"] = row["has_weights"] or w is not None
        open_rows = [r for r in open_rows if len(r["input_ids"]) < max_length]
    for row in rows:
        if not row.pop("has_weights"):
            row["weights"] = None
    return rows


class Collator:
    """Right-pads rows to the longest into ``input_ids`` (pad id) and ``labels`` (-100), plus either
    ``attention_mask`` (plain examples) or, for packed rows (they carry ``position_ids``),
    ``position_ids`` whose padding restarts at 0 (a segment of its own, with ignored labels).
    ``token_weights`` ``[B, T]`` when any row has weights (rows without: 1 on loss tokens)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples: Sequence) -> dict:
        rows = [_as_dict(e) for e in examples]
        packed = "position_ids" in rows[0]
        longest = max(len(r["input_ids"]) for r in rows)
        n = len(rows)
        ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)
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


# the name used before packed and padded rows shared one collator
PaddingCollator = Collator
