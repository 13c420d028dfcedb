"""Per-token statistics of a model on the response tokens of a record file, without training.

For every loss token (the response tokens of ``deft data`` records, exactly the tokens the
trainer puts a loss on) one forward pass records, as 1-D tensors over the tokens in record
order:

* ``p`` — target probability ``P[y]`` (paper Eq. 3);
* ``logp`` — ``log p`` (``log`` of the fp32 ``p``; ``p`` below the smallest fp32 number is
  clamped to it, so ``logp >= -103.3``);
* ``entropy`` — Shannon entropy ``-Σ_v P_v log P_v`` of the predictive distribution, in nats;
* ``focus`` — DEFT's focus index ``Σ_v P_v²`` (paper Eq. 20);
* ``gate/<spec>`` — the gate ``s`` of each objective in ``gates`` (``dL/dz_y = -s (1 - p)``,
  Eq. 6) as computed by that objective's own implementation on the real rows; the default
  ``deft`` and ``eaft`` are the two gates of the paper's figures that depend on the whole
  distribution, not on ``p`` alone;
* ``example`` — index of the record in the file (0-based, over all rows), ``token_id`` — the
  label ``y``; together they identify a token, so two files can be compared token by token.

The loss is computed as the trainer does: the decoder's final hidden states ``[B, T, H]`` and
the LM-head weight ``[V, H]`` go to :func:`deft.fused_token_loss` with labels shifted by one
(position ``t`` predicts ``labels[t + 1]``), under ``torch.no_grad``; the ``[tokens, V]``
logits are never held.

Files: ``.npz`` (numpy, readable without torch) or ``.pt``; :func:`save_token_stats` /
:func:`load_token_stats`. A file also carries ``meta`` (model, data, sample size, seed, ...).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

__all__ = ["TOKEN_KEYS", "collect_token_stats", "sample_records", "save_token_stats", "load_token_stats",
           "gate_names", "check_same_tokens"]

TOKEN_KEYS = ("p", "logp", "entropy", "focus", "example", "token_id")
_FLOAT_KEYS = ("p", "logp", "entropy", "focus")
_TINY = torch.finfo(torch.float32).tiny * 2.0 ** -23  # smallest positive (subnormal) fp32
DEFAULT_GATES = ("deft", "eaft")


def sample_records(path, n: Optional[int] = None, seed: int = 0) -> list[tuple[int, str, dict]]:
    """``[(index, where, record)]`` for the valid records of ``path`` (:func:`deft.data.iter_records`),
    or a uniform sample of ``n`` of them drawn with ``random.Random(seed)``, kept in file order.

    Invalid rows are skipped; a file with no valid record raises ``ValueError``.
    """
    from ..data import RecordError, iter_records

    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of records, got {n}")
    rows, bad = [], []
    for i, (where, rec) in enumerate(iter_records(path)):
        if isinstance(rec, RecordError):
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


def _device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


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
) -> dict:
    """Per-token statistics of ``model`` on the response tokens of ``records_path``.

    Args:
        model: an HF causal LM (any device; run as is, in eval mode).
        tokenizer: its tokenizer (with a pad token, as :func:`deft.model.load_tokenizer` gives).
        records_path: a record file of ``deft data`` (JSONL / JSON / Parquet / datasets dir).
        n: number of records to sample (``None``: all), drawn deterministically with ``seed``.
        batch_size, max_length, template, truncation: batching and tokenisation, as in
            ``deft train`` (:class:`deft.data.RecordTokenizer`).
        gates: objective specs whose per-token gate to record (one extra LM-head pass each).
        chunk_size: rows per chunk of the fused loss (``None``: automatic).

    Returns:
        ``{key: 1-D tensor [N]}`` for :data:`TOKEN_KEYS` and ``gate/<spec>`` (N = number of
        response tokens, in record order then position order), plus ``meta`` (a dict).
    """
    from ..data import RecordError, RecordTokenizer
    from ..fused import fused_token_loss
    from ..model.fused_forward import lm_parts
    from ..objectives import parse_objective
    from ..train.collate import PaddingCollator

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    specs = [parse_objective(g).spec for g in gates]
    for spec in specs:
        obj = parse_objective(spec)
        if obj.needs - {"batch"}:
            raise ValueError(f"gate '{spec}' needs {', '.join(sorted(obj.needs - {'batch'}))}; "
                             "token statistics record gates of objectives that need only the model")
    rows = sample_records(records_path, n, seed)
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
    if not examples:
        raise ValueError(f"{records_path}: none of the {len(rows)} sampled records has response tokens "
                         f"after tokenisation (max_length={max_length})")

    decoder, head = lm_parts(model)
    device = _device_of(model)
    bias = getattr(head, "bias", None)
    collate = PaddingCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    parts: dict[str, list] = {k: [] for k in TOKEN_KEYS}
    for spec in specs:
        parts[f"gate/{spec}"] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                batch = collate([ex for _, ex in chunk])
                ids = batch["input_ids"].to(device)
                mask = batch["attention_mask"].to(device)
                out = decoder(input_ids=ids, attention_mask=mask, use_cache=False)
                hidden = (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0])[:, :-1]
                labels = batch["labels"][:, 1:].to(device)
                _, st = fused_token_loss(hidden, head.weight, labels, "deft", bias=bias, reduction="sum",
                                         chunk_size=chunk_size, return_stats=True)
                keep = st["mask"]
                p = st["p"][keep].float()
                parts["p"].append(p.cpu())
                parts["logp"].append(p.clamp_min(_TINY).log().cpu())
                parts["entropy"].append(st["entropy"][keep].float().cpu())
                parts["focus"].append(st["focus"][keep].float().cpu())
                if "deft" in specs:  # the pass above is the deft objective's own
                    parts["gate/deft"].append(st["gate"][keep].float().cpu())
                for spec in specs:
                    if spec == "deft":
                        continue
                    _, sg = fused_token_loss(hidden, head.weight, labels, spec, bias=bias, reduction="sum",
                                             chunk_size=chunk_size, return_stats=True)
                    parts[f"gate/{spec}"].append(sg["gate"][keep].float().cpu())
                rows_idx = torch.tensor([i for i, _ in chunk], device=device).unsqueeze(1).expand_as(labels)
                parts["example"].append(rows_idx[keep].to(torch.int64).cpu())
                parts["token_id"].append(labels[keep].to(torch.int64).cpu())
                if log is not None:
                    log(f"token stats: {min(start + batch_size, len(examples))}/{len(examples)} examples")
    finally:
        model.train(was_training)
    result = {k: torch.cat(v) for k, v in parts.items()}
    result["meta"] = {
        "data": str(records_path),
        "model": str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__),
        "records_sampled": len(rows),
        "examples": len(examples),
        "skipped": skipped,
        "tokens": int(result["p"].numel()),
        "n": n,
        "seed": seed,
        "max_length": max_length,
        "template": template,
        "truncation": truncation,
        "gates": specs,
    }
    return result


def gate_names(stats: dict) -> list[str]:
    """Objective specs whose gate a statistics dict carries (``gate/<spec>`` keys)."""
    return [k.split("/", 1)[1] for k in stats if k.startswith("gate/")]


def save_token_stats(stats: dict, path) -> Path:
    """Write ``stats`` (from :func:`collect_token_stats`) to ``path`` (``.npz`` or ``.pt``)."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v for k, v in stats.items() if isinstance(v, torch.Tensor)}
    meta = dict(stats.get("meta") or {})
    if path.suffix == ".pt":
        torch.save({**tensors, "meta": meta}, path)
        return path
    if path.suffix != ".npz":
        raise ValueError(f"{path}: token statistics are saved as .npz or .pt")
    arrays = {k: v.numpy() for k, v in tensors.items() if not k.startswith("gate/")}
    names = gate_names(tensors)
    arrays["gate_names"] = np.array(names, dtype=str)
    arrays["gates"] = (np.stack([tensors[f"gate/{g}"].numpy() for g in names]) if names
                       else np.zeros((0, tensors["p"].numel()), dtype=np.float32))
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_token_stats(path) -> dict:
    """Read a file written by :func:`save_token_stats` (or a directory holding ``token_stats.npz``
    / ``token_stats.pt``); returns the same dict of 1-D tensors plus ``meta``."""
    import numpy as np

    path = Path(path)
    if path.is_dir():
        found = [path / name for name in ("token_stats.npz", "token_stats.pt") if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no token_stats.npz (write one with 'deft probe --out {path}')")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such token statistics file")
    if path.suffix == ".pt":
        raw = torch.load(path, map_location="cpu", weights_only=True)
        out = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
        out["meta"] = dict(raw.get("meta") or {})
    else:
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a token statistics file ({err})") from None
        out = {k: torch.from_numpy(np.asarray(v)) for k, v in data.items()
               if k not in ("gate_names", "gates", "meta")}
        for i, name in enumerate(data.get("gate_names", np.array([], dtype=str)).tolist()):
            out[f"gate/{name}"] = torch.from_numpy(np.asarray(data["gates"][i]))
        out["meta"] = json.loads(str(data["meta"])) if "meta" in data else {}
    missing = [k for k in ("p", "entropy") if k not in out]
    if missing:
        raise ValueError(f"{path}: not a token statistics file (missing {', '.join(missing)})")
    if "logp" not in out:
        out["logp"] = out["p"].float().clamp_min(_TINY).log()
    out["meta"].setdefault("path", str(path))
    return out


def check_same_tokens(a: dict, b: dict, names: Sequence[str] = ("before", "after")) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` cover the same tokens in the same order (same
    ``example`` indices and ``token_id`` labels), e.g. two checkpoints probed on one file."""
    na, nb = a["p"].numel(), b["p"].numel()
    if na != nb:
        raise ValueError(f"{names[0]} has {na} tokens and {names[1]} has {nb}: probe both on the same records "
                         "(same --data, --n, --seed, --max-length and tokenizer)")
    for key in ("example", "token_id"):
        if key in a and key in b and not torch.equal(a[key].long(), b[key].long()):
            where = int((a[key].long() != b[key].long()).nonzero()[0])
            raise ValueError(f"{names[0]} and {names[1]} differ at token {where} ({key}): probe both on the same "
                             "records (same --data, --n, --seed, --max-length and tokenizer)")
