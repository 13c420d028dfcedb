"""Tests of deft.cli.objectives: ``deft objectives``: list every objective, or describe one spec."""

from deft.cli.main import main


def test_objectives_command_describes_a_spec(capsys):
    assert main(["objectives", "GeneralFamily-0.3"]) == 0
    assert "alpha = 0.3" in capsys.readouterr().out


def test_objectives_lists_every_objective_and_refuses_a_bad_spec_in_one_line(capsys):
    from deft.objectives import REGISTRY

    assert main(["objectives"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line and not line[0].isspace()]
    assert set(REGISTRY) <= set(listed)
    assert main(["objectives", "power:alpha=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'spec'" in err[0] and "alpha" in err[0]
