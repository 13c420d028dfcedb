"""Tests of deft.recipes.probe: ``probe``: load a model, collect its token statistics on a record file
and summarise its regime."""

import json

import pytest

from deft.analysis.token_stats import load_token_stats
from deft.cli.main import main


def test_probe_cli_writes_json_and_token_stats(tiny_model_dir, figfont_records, tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(["probe", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--n", "3",
                 "--gates", "deft", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "regime: model-" in text and "recommended objectives" in text
    summary = json.loads((out / "probe.json").read_text())
    for key in ("mean_p", "mean_focus", "regime", "cayley_focus_of_mean_p", "histogram", "mean_entropy",
                "confident_conflicts", "recommendation", "thresholds"):
        assert key in summary
    assert summary["regime"] in ("strong", "intermediate", "weak")
    assert summary["regime"] == "weak"  # a random model: focus ~ 1/V
    st = load_token_stats(out / "token_stats.npz")
    assert st["p"].numel() == summary["tokens"] and "gate/deft" in st


def test_gates_none_records_no_gate_and_none_stands_alone(tiny_model_dir, figfont_records):
    """``--gates none`` (docs/results run scripts use it) means no gate, as the help says."""
    from deft.config import ConfigError, load_config
    from deft.recipes.probe import ProbeConfig

    base = dict(model=str(tiny_model_dir), data=str(figfont_records))
    assert load_config(ProbeConfig, None, dict(base, gates="none")).gates == []
    assert load_config(ProbeConfig, None, dict(base, gates="NONE")).gates == []
    assert load_config(ProbeConfig, None, dict(base, gates="deft,eaft")).gates == ["deft", "eaft"]
    with pytest.raises(ConfigError, match="'none' stands alone"):
        load_config(ProbeConfig, None, dict(base, gates="deft,none"))
