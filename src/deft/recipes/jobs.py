"""Bookkeeping of a comparison's jobs: what each result folder was computed from, and why it is
reused, resumed or redone (see "Results that know their inputs" in :mod:`deft.recipes.compare`).

A :class:`Job` is one training run or evaluation with the settings and input files that decide its
result; its ``hash`` is :func:`deft.config.settings_hash` of both. A finished job leaves
``FOLDER/inputs.json`` (:func:`record_inputs`: ``{"hash", "settings", "inputs"}``); the next
comparison reads it back (:func:`stored`) and reuses the folder when the hash is the same, or says
which setting changed (:func:`reason`). ``OUT/hashes.json`` (:class:`Ledger`) remembers the hash each
folder was *started* for, so that only an unfinished run of the same settings is resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["Job", "Ledger", "record_inputs", "stored", "changes", "reason"]


@dataclass
class Job:
    """One run (``kind="train"``) or evaluation (``"eval"``, ``"heldout"``) of a comparison:
    ``label`` for the log, the ``folder`` it writes, the resolved ``settings`` and the ``inputs``
    (files whose bytes are hashed); ``hash`` is computed from the last two."""

    kind: str
    label: str
    folder: Path
    settings: dict
    inputs: dict = field(default_factory=dict)
    hash: str = ""

    def __post_init__(self):
        from ..config import settings_hash

        self.hash = settings_hash(self.settings, self.inputs)


def stored(folder: Path, name: str = "inputs.json") -> dict:
    """The JSON record ``folder/name`` (``{}`` when it is missing or unreadable)."""
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return {}


def changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable differences of two settings mappings (``max_steps 2 -> 3``; nested keys as
    ``eval.k``; sha256 hex digests shortened to 12 characters)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, f"{prefix}{key}.")
        elif a != b:
            short = [v[:12] if isinstance(v, str) and len(v) == 64 else v for v in (a, b)]  # sha256 hex
            out.append(f"{prefix}{key} {short[0]} -> {short[1]}")
    return out


def reason(job: Job, record: dict) -> str:
    """Why a folder's previous result (its stored ``record``) cannot be reused for ``job``."""
    if not record:
        return "no record of its inputs"
    changed = changes(record.get("settings") or {}, job.settings)
    return ", ".join(changed) if changed else "an input file changed"


class Ledger:
    """``OUT/hashes.json``: the hash each folder was started for (resume only the same run)."""

    def __init__(self, out: Path):
        self.path = out / "hashes.json"
        self.data = stored(out, "hashes.json")

    def started(self, job: Job, out: Path) -> None:
        """Note (atomically) that ``job`` starts in its folder under ``out``."""
        from ..io import atomic_write_json

        self.data[str(job.folder.relative_to(out))] = job.hash
        atomic_write_json(self.path, self.data)

    def get(self, job: Job, out: Path) -> Optional[str]:
        """The hash ``job``'s folder was last started for, or ``None``."""
        return self.data.get(str(job.folder.relative_to(out)))


def record_inputs(job: Job, name: str = "inputs.json") -> None:
    """Write ``job.folder/name``: ``{"hash", "settings", "inputs"}`` of the finished job."""
    from ..io import atomic_write_json

    atomic_write_json(job.folder / name, {"hash": job.hash, "settings": job.settings, "inputs": job.inputs})
