"""Tests of deft.cli.curves: ``deft curves``: the gate s(p) and learning signal W(p) of every objective
(paper Eq. 7)."""

from deft.cli.main import main


def test_curves_command_writes_png_and_csv(tmp_path, capsys):
    assert main(["curves", "--objectives", "nll,deft,p", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    rows = (tmp_path / "curves.csv").read_text().splitlines()
    assert rows[0] == "objective,shape,p,gate,signal"
    nll_rows = [r.split(",") for r in rows if r.startswith("nll,flat")]
    assert all(abs(float(r[3]) - 1.0) < 1e-5 for r in nll_rows)  # NLL's gate is 1
