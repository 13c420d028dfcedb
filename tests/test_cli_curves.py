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


def test_curves_options_are_checked_before_any_curve(tmp_path, capsys):
    assert main(["curves", "--vocab-size", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'vocab_size' must be at least 2, got 1" in err[0]
    assert not (tmp_path / "o").exists()


def test_curves_objectives_with_their_own_parameters(tmp_path, capsys):
    assert main(["curves", "--objectives", "nll, power:alpha=0.5,", "--vocab-size", "16", "--out", str(tmp_path)]) == 0
    specs = {r.split(",")[0] for r in (tmp_path / "curves.csv").read_text().splitlines()[1:]}
    assert specs == {"nll", "power:alpha=0.5"}
