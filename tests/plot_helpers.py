"""Helpers shared by test_analysis_landscape.py, test_analysis_learning.py, test_analysis_report.py and
test_cli_plot.py."""

from __future__ import annotations

import pytest
import torch

from deft.analysis.probe import summarize_token_stats, write_probe

PNG = b"\x89PNG\r\n\x1a\n"


def _stats(seed: int, n: int = 300, shift: float = 0.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    logp = (-12 * torch.rand(n, generator=g) ** 2 + shift).clamp(max=0.0)
    p = logp.exp()
    focus = (p + 0.3 * torch.rand(n, generator=g)).clamp(1e-4, 1.0)
    entropy = 6 * torch.rand(n, generator=g)
    return {
        "p": p, "logp": logp, "entropy": entropy, "focus": focus,
        "example": torch.arange(n) // 10, "token_id": torch.arange(n) % 97,
        "gate/deft": torch.exp(focus * logp), "gate/eaft:k=20,gamma=1.0": (entropy / 6).clamp(0, 1),
        "meta": {"model": f"m{seed}"},
    }


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    root = tmp_path_factory.mktemp("probes")
    out = {}
    for name, seed, shift in (("base", 0, 0.0), ("trained", 0, 2.0), ("other", 1, 0.0)):
        st = _stats(seed, shift=shift)
        write_probe({"model": name, **summarize_token_stats(st)}, st, root / name)
        out[name] = root / name
    return out
