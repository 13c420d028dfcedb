"""Token-length statistics of a record file with a model's tokenizer (``deft data stats``)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .readers import iter_records
from .records import RecordError
from .tokenize import RecordTokenizer
from .validate import ValidationReport, check_records

__all__ = ["TokenStats", "token_stats", "DEFAULT_LENGTHS", "PERCENTILES"]

DEFAULT_LENGTHS = (512, 1024, 2048, 4096, 8192)
PERCENTILES = (50, 90, 95, 99)


@dataclass
class TokenStats:
    """Per-record token counts of a file: ``prompt`` (tokens before the response), ``response``
    (trained-on tokens, end-of-turn included) and ``total``; ``report`` counts valid/invalid rows."""

    report: ValidationReport
    template: str
    prompt: array = field(default_factory=lambda: array("l"))
    response: array = field(default_factory=lambda: array("l"))
    total: array = field(default_factory=lambda: array("l"))

    def percentiles(self, which: str) -> dict[str, float]:
        """``mean``, ``p50`` .. ``p99``, ``min`` and ``max`` of one of the three counts."""
        values = np.asarray(getattr(self, which), dtype=np.int64)
        if values.size == 0:
            return {}
        out = {"min": float(values.min()), "mean": float(values.mean())}
        out.update({f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES})
        out["max"] = float(values.max())
        return out

    def truncated_at(self, max_length: int) -> int:
        """How many records are longer than ``max_length`` tokens."""
        return int((np.asarray(self.total, dtype=np.int64) > max_length).sum())

    def format(self, source: str, max_lengths: Sequence[int] = DEFAULT_LENGTHS) -> str:
        """A small text report."""
        lines = [f"{source}: {self.report.summary()}; template: {self.template}"]
        if not len(self.total):
            return "\n".join(lines)
        head = ["tokens", "min", "mean", *(f"p{q}" for q in PERCENTILES), "max"]
        rows = [head]
        for which in ("prompt", "response", "total"):
            p = self.percentiles(which)
            rows.append([which, *(f"{p[k]:.0f}" if k != "mean" else f"{p[k]:.1f}" for k in head[1:])])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        n = len(self.total)
        for m in max_lengths:
            k = self.truncated_at(m)
            lines.append(f"longer than {m} tokens: {k} of {n} ({100.0 * k / n:.1f}%)")
        return "\n".join(lines)


def token_stats(
    source: str,
    tokenizer,
    *,
    key_map: Mapping[str, str] | None = None,
    split: str = "train",
    template: str = "auto",
    all_turns: bool = False,
    max_problems: int = 20,
) -> TokenStats:
    """Tokenise every valid record of ``source`` (no truncation) and collect its token counts;
    invalid records are counted in ``report`` and skipped."""
    view = RecordTokenizer(tokenizer, template=template, all_turns=all_turns)
    stats = TokenStats(ValidationReport(max_problems=max_problems), view.template)
    for where, rec in check_records(iter_records(source, key_map=key_map, split=split), stats.report):
        try:
            ex = view(rec, where)  # no max_length: never None
        except RecordError as err:
            stats.report.valid -= 1
            stats.report.add_problem(err)
            continue
        stats.prompt.append(ex.num_prompt_tokens)
        stats.response.append(ex.num_loss_tokens)
        stats.total.append(len(ex))
    return stats
