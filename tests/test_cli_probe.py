"""Tests of deft.cli.probe: ``deft probe``: the model's prior on the response tokens of a data file,
and its regime."""

from deft.cli.main import main


def test_probe_cli_errors(tiny_model_dir, figfont_records, tmp_path, capsys):
    assert main(["probe", "--model", str(tiny_model_dir), "--data", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jsonl" in err[0]
    assert main(["probe", "--data", "x.jsonl", "--n", "-1"]) == 2
    assert main(["probe", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--gates", "sft_kl"]) == 2
    assert "needs" in capsys.readouterr().err
