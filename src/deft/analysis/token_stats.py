"""Saved per-token statistics: the file format and checks over it (no model, no training).

A statistics dict (written by :func:`deft.recipes.token_stats.collect_token_stats`) holds, as
1-D tensors over the loss tokens of a record file in record order:

* ``p`` — target probability ``P[y]`` (paper Eq. 3);
* ``logp`` — ``log p`` (``p`` below the smallest fp32 number is clamped to it, so
  ``logp >= -103.3``);
* ``entropy`` — Shannon entropy ``-Σ_v P_v log P_v`` of the predictive distribution, in nats;
* ``focus`` — DEFT's focus index ``Σ_v P_v²`` (paper Eq. 20);
* ``gate/<spec>`` — the gate ``s`` of an objective (``dL/dz_y = -s (1 - p)``, Eq. 6);
* ``example`` — index of the record in the file, ``token_id`` — the label ``y``; together they
  identify a token, so two files can be compared token by token;

plus ``meta`` (model, data, sample size, seed, ...).

Files: ``.npz`` (numpy, readable without torch) or ``.pt``; :func:`save_token_stats` /
:func:`load_token_stats`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from ..io import atomic_open

__all__ = ["TOKEN_KEYS", "TINY", "save_token_stats", "load_token_stats", "gate_names", "check_same_tokens"]

TOKEN_KEYS = ("p", "logp", "entropy", "focus", "example", "token_id")
TINY = torch.finfo(torch.float32).tiny * 2.0 ** -23  # smallest positive (subnormal) fp32


def gate_names(stats: dict) -> list[str]:
    """Objective specs whose gate a statistics dict carries (``gate/<spec>`` keys)."""
    return [k.split("/", 1)[1] for k in stats if k.startswith("gate/")]


def save_token_stats(stats: dict, path) -> Path:
    """Write ``stats`` (a statistics dict, see the module docstring) to ``path`` (``.npz`` or ``.pt``),
    atomically."""
    import numpy as np

    path = Path(path)
    tensors = {k: v for k, v in stats.items() if isinstance(v, torch.Tensor)}
    meta = dict(stats.get("meta") or {})
    if path.suffix == ".pt":
        with atomic_open(path, "wb") as f:
            torch.save({**tensors, "meta": meta}, f)
        return path
    if path.suffix != ".npz":
        raise ValueError(f"{path}: token statistics are saved as .npz or .pt")
    arrays = {k: v.numpy() for k, v in tensors.items() if not k.startswith("gate/")}
    names = gate_names(tensors)
    arrays["gate_names"] = np.array(names, dtype=str)
    arrays["gates"] = (np.stack([tensors[f"gate/{g}"].numpy() for g in names]) if names
                       else np.zeros((0, tensors["p"].numel()), dtype=np.float32))
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
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
        out["logp"] = out["p"].float().clamp_min(TINY).log()
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
