"""deft plot: landscape, distribution, learning/forgetting, report page and CLI errors (no model needed)."""

import json
import re

import pytest
import torch

from deft.analysis.distribution import log10_p_histogram
from deft.analysis.landscape import gate_depends_on_p_only, landscape
from deft.analysis.learning import learning_shares, token_changes
from deft.analysis.probe import summarize_token_stats, write_probe
from deft.analysis.token_stats import save_token_stats
from deft.cli.main import main

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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    rows = [{"step": s, "loss": 3.0 - 0.1 * s, "mean_p": 0.05 + 0.02 * s, "mean_focus": 0.05 + 0.03 * s,
             "mean_entropy": 3.0 - 0.1 * s, "frac_p_below_1e-3": 0.3, "mean_gate": 0.5, "tokens": 10}
            for s in range(1, 11)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_learning_shares_hand_made():
    before = torch.tensor([0.1, 0.2, 0.6, 0.9, 0.3, 0.7, 0.005, 0.5])
    after = torch.tensor([0.5, 0.205, 0.4, 0.95, 0.1, 0.7, 0.001, 0.52])
    s = learning_shares(before, after, threshold=0.01)
    # learned: 0 (low), 3 (high), 7 (high: 0.5 >= 0.5); forgotten: 2 (high), 4 (low); unchanged: 1, 5, 6
    assert s["tokens"] == 8
    assert s["learned"] == pytest.approx(3 / 8) and s["forgotten"] == pytest.approx(2 / 8)
    assert s["unchanged"] == pytest.approx(3 / 8)
    assert s["learned_high"] == pytest.approx(2 / 8) and s["learned_low"] == pytest.approx(1 / 8)
    assert s["forgotten_high"] == pytest.approx(1 / 8) and s["forgotten_low"] == pytest.approx(1 / 8)
    assert learning_shares(before, after, threshold=0.0)["learned"] == pytest.approx(4 / 8)
    with pytest.raises(ValueError):
        learning_shares(before, after[:3])


def test_token_changes_and_mismatch():
    a, b = _stats(0), _stats(0, shift=1.0)
    ch = token_changes(a, b)
    torch.testing.assert_close(ch["dp"], (b["p"] - a["p"]).double())
    torch.testing.assert_close(ch["dloss"], (a["logp"] - b["logp"]).double())
    assert bool(((ch["dp"] > 0) <= (ch["dloss"] <= 0)).all())  # p up <=> loss down
    with pytest.raises(ValueError, match="token_id"):
        token_changes(a, {**b, "token_id": b["token_id"].roll(1)})
    with pytest.raises(ValueError, match="has 299"):
        token_changes(a, {k: (v[:299] if isinstance(v, torch.Tensor) else v) for k, v in b.items()})


def test_landscape_gates():
    st = _stats(3)
    p = st["p"].double()
    for spec in ("nll", "p", "dft", "cayley", "power:alpha=0.3"):
        assert gate_depends_on_p_only(spec), spec
    for spec in ("deft", "eaft", "label_smoothing"):
        assert not gate_depends_on_p_only(spec), spec
    panels, skipped = landscape(st, ["nll", "p", "deft", "eaft", "label_smoothing"])
    torch.testing.assert_close(panels["nll"]["signal"], 1 - p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(panels["p"]["signal"], p * (1 - p), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(panels["deft"]["signal"], st["gate/deft"].double() * (1 - p))
    assert "eaft:k=20,gamma=1.0" in panels
    for panel in panels.values():
        assert float(panel["normalised"].max()) == pytest.approx(1.0)
        assert float(panel["normalised"].min()) >= 0.0
    assert list(skipped) == ["label_smoothing:lam=0.1"]


def test_log10_histogram_integrates_to_one():
    edges, density = log10_p_histogram(torch.tensor([1e-12, 1e-3, 0.5, 1.0]), bins=16)
    assert edges[0] == -8 and edges[-1] == 0
    assert float((density * (edges[1:] - edges[:-1])).sum()) == pytest.approx(1.0)
    assert density[0] > 0  # p below 1e-8 lands in the first bin


def test_plot_cli_writes_pngs_and_index(probes, run_dir, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", "--runs", f"deft={run_dir}", "--probes", str(probes["base"]), f"tr={probes['trained']}",
                 "--before", str(probes["base"]), "--after", str(probes["trained"] / "token_stats.npz"),
                 "--objectives", "nll,p,eaft,deft,label_smoothing", "--curve-objectives", "nll,deft",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "label_smoothing" in printed and "learned" in printed
    names = ["training_curves.png", "landscape.png", "distribution.png", "learning.png", "curves.png"]
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 2000, name
    page = (out / "index.html").read_text()
    assert set(re.findall(r'src="([^"]+)"', page)) == set(names)
    assert "<table>" in page and "base" in page and "tr" in page
    shares = json.loads((out / "learning.json").read_text())
    assert shares["learned"] > 0.5  # every p went up by the shift


def test_plot_cli_theory_only(tmp_path):
    out = tmp_path / "theory"
    assert main(["plot", "--curve-objectives", "nll,p", "--out", str(out)]) == 0
    assert (out / "curves.png").read_bytes()[:8] == PNG
    assert re.findall(r'src="([^"]+)"', (out / "index.html").read_text()) == ["curves.png"]


@pytest.mark.parametrize("args, needle", [
    (["--runs", "{tmp}/no-run"], "metrics.jsonl"),
    (["--probes", "{tmp}/no-probe"], "no-probe"),
    (["--before", "{base}"], "--after"),
    (["--before", "{base}", "--after", "{other_cut}"], "has"),
])
def test_plot_cli_errors(args, needle, probes, tmp_path, capsys):
    st = _stats(1)
    cut = {k: (v[:200] if isinstance(v, torch.Tensor) else v) for k, v in st.items()}
    save_token_stats(cut, tmp_path / "cut" / "token_stats.npz")
    fill = {"tmp": str(tmp_path), "base": str(probes["base"]), "other_cut": str(tmp_path / "cut")}
    argv = ["plot", *[a.format(**fill) for a in args], "--curve-objectives", "nll", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "o" / "index.html").exists()
