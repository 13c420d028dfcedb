"""Tests of deft.cli.objectives: ``deft objectives``: list every objective, or describe one spec."""

from deft.cli.main import main


def test_objectives_command_describes_a_spec(capsys):
    assert main(["objectives", "GeneralFamily-0.3"]) == 0
    assert "alpha = 0.3" in capsys.readouterr().out
