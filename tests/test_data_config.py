"""Tests of deft.data.config: ``DataConfig``: every option of ``deft data``, declared once on
:mod:`deft.config` (help text, aliases, choices and range checks; YAML via ``--config``). Nothing
here imports torch."""

from cli_data_helpers import read, run


def test_config_file_map_and_aliases(tmp_path, capsys):
    src = tmp_path / "rows.csv"
    src.write_text("question,answer,extra\nq1,a1,x\nq2,a2,y\nq3,a3,z\n")
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"map: [prompt=question, response=answer]\nkeep_extra: true\nout: {tmp_path / 'o.jsonl'}\n")
    code, out, err = run(capsys, "jsonl", str(src), "--config", str(cfg), "--size", "2", "--seed", "5")
    assert code == 0, err
    recs = read(tmp_path / "o.jsonl")
    assert len(recs) == 2 and all(r["prompt"] in ("q1", "q2", "q3") and r["metadata"]["extra"] for r in recs)
    assert {r["prompt"][1] for r in recs} == {r["response"][1] for r in recs}
    cfg.write_text("mapp: [prompt=question]\n")
    code, _, err = run(capsys, "jsonl", str(src), "--config", str(cfg), "--out", str(tmp_path / "p.jsonl"))
    assert code == 2 and "unknown option 'mapp' (did you mean 'map'?)" in err
