"""What a newcomer installs: the distribution's name in every install line, and dependency ranges
whose low end is tested (``make test-min``, ``tools/lowest_constraints.py``) and stated in the README."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
DISTRIBUTION = "deft-sft"  # `deft` on the package index is another project ("Easy Distributed Feature Tracking")

_spec = importlib.util.spec_from_file_location("lowest_constraints", ROOT / "tools" / "lowest_constraints.py")
lowest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lowest)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extras() -> list[str]:
    """The names of the project's optional dependency groups."""
    section = PYPROJECT.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return re.findall(r"^([A-Za-z0-9][A-Za-z0-9_-]*)\s*=", section, re.M)


def doc_files() -> list[Path]:
    """Every file a user reads install instructions in: the README, docs/, examples/, the Makefile and
    the program's own messages (src/)."""
    files = [ROOT / "README.md", ROOT / "Makefile"]
    for folder in ("docs", "examples", "src"):
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".md", ".yaml", ".yml",
                                                                                                ".py", ".sh", ".txt"))
    return files


def install_commands(text: str) -> list[tuple[int, str]]:
    """``(line number, arguments)`` of every ``pip install`` in ``text``: what follows it up to the end
    of its code span, a comment, a shell separator or the line."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in re.finditer(r"pip3? install\b", line):
            rest = line[match.end():]
            found.append((number, re.split(r"`|\)|;|\s#|&&|\|\|?", rest, maxsplit=1)[0]))
    return found


def installed_names(arguments: str) -> list[str]:
    """The distributions a ``pip install`` argument list names from the package index (normalised);
    local paths (``.``, ``-e .``, ``./dist/x.whl``) and the files of ``-r`` / ``-c`` are not names."""
    try:
        tokens = shlex.split(arguments)
    except ValueError:  # an unbalanced quote in prose
        tokens = arguments.split()
    names, skip = [], False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-f", "--find-links",
                     "-i", "--index-url", "--extra-index-url"):
            skip = token not in ("-e", "--editable")
            continue
        if token.startswith("-") or token.startswith((".", "/", "~")) or "/" in token or token.endswith(".whl"):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", token.strip("'\""))
        if match:
            names.append(_normalise(match.group(0)))
    return names


def test_install_lines_are_read_with_their_names():
    text = ("Run `pip install 'deft-sft[trl]'` first.\n"
            "pip install -e \".[test]\" torch==2.13.0  # the project itself\n"
            "(pip install deepspeed); deft is then ready\n"
            "pip install -r reqs.txt -c cons.txt ./dist/deft_sft-0.1.0.whl vllm\n")
    commands = install_commands(text)
    assert [n for n, _ in commands] == [1, 2, 3, 4]
    assert [installed_names(args) for _, args in commands] == [["deft-sft"], ["torch"], ["deepspeed"], ["vllm"]]
    assert installed_names(" 'deft[trl]'") == ["deft"] and installed_names(" Deft_SFT") == ["deft-sft"]


def test_the_distribution_is_deft_sft_and_the_command_and_import_stay_deft():
    assert re.search(r'^name = "([^"]+)"', PYPROJECT, re.M).group(1) == DISTRIBUTION
    assert re.search(r'^deft = "deft\.cli\.main:main"', PYPROJECT, re.M)
    assert (ROOT / "src" / "deft" / "__init__.py").is_file()


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_install_of_this_project_names_its_distribution(path):
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(ROOT)
    for number, arguments in install_commands(text):
        assert "deft" not in installed_names(arguments), (
            f"{where}:{number}: 'pip install{arguments}' installs the package index's 'deft', another project; "
            f"name this one {DISTRIBUTION}")
    # an extra of this project is only ever spelled with its distribution: deft-sft[trl], never deft[trl]
    bare = re.compile(r"(?<![\w.-])deft\[(" + "|".join(map(re.escape, extras())) + r")\]")
    for number, line in enumerate(text.splitlines(), 1):
        assert not bare.search(line), f"{where}:{number}: {line.strip()!r}: write {DISTRIBUTION}[...]"


def test_readme_tells_how_to_install_the_distribution():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = [name for _, args in install_commands(readme) for name in installed_names(args)]
    assert DISTRIBUTION in names
    assert {"trl", "tensorboard"} <= set(extras())


# ------------------------------------------------------------------ tested dependency ranges


def test_lowest_pins_follow_the_lower_bounds():
    text = ('[project]\ndependencies = [\n    "torch>=2.4",\n    "numpy>=1.26",\n    "peft>=0.13,<1",\n]\n\n'
            '[project.optional-dependencies]\ntrl = ["trl>=1.16,<1.17"]\ntest = ["pytest>=8.0", "trl>=1.16,<1.17"]\n'
            'mutation = ["cosmic-ray==8.7.0"]\n\n[project.scripts]\ndeft = "x"\n')
    reqs = lowest.requirements(text, ("test",))
    assert reqs == ["torch>=2.4", "numpy>=1.26", "peft>=0.13,<1", "pytest>=8.0", "trl>=1.16,<1.17"]
    assert lowest.lowest_pins(reqs) == ["numpy==1.26", "peft==0.13", "pytest==8.0", "trl==1.16"]  # torch: local build
    assert lowest.lowest_pins(reqs, ("torch", "trl")) == ["numpy==1.26", "peft==0.13", "pytest==8.0"]
    assert lowest.lowest_pins(lowest.requirements(text, ("trl",), core=False)) == ["trl==1.16"]
    assert lowest.lowest_pins(lowest.requirements(text, ("mutation",))) == ["numpy==1.26", "peft==0.13",
                                                                               "cosmic-ray==8.7.0"]
    with pytest.raises(ValueError, match="'rapidfuzz' has no lower bound"):
        lowest.lowest_pins(["rapidfuzz"])
    with pytest.raises(ValueError, match="no optional dependency group 'gpu'"):
        lowest.requirements(text, ("gpu",))


def test_a_package_added_later_raises_only_what_it_needs_and_only_to_its_bounds():
    pytest.importorskip("packaging")
    installed = {"accelerate": "1.3.0", "datasets": "3.0.0", "numpy": "1.26.0", "transformers": "5.18.0"}
    requires = ["accelerate>=1.10.1", "datasets>=4.7.0", "numpy>=1.26.0", "transformers>=4.56.2", "jinja2",
                "pandas>=2.1.1", "torch>=2.0", 'rich; extra == "rich"', 'liger-kernel>=0.6; sys_platform == "linux"']
    assert lowest.raised_pins(requires, installed) == ["accelerate==1.10.1", "datasets==4.7.0", "pandas==2.1.1"]


def _core() -> dict[str, str]:
    """``{name: lower bound}`` of the core dependencies in pyproject.toml."""
    return {_normalise(pin.split("==")[0]): pin.split("==")[1]
            for pin in lowest.lowest_pins(lowest.requirements(PYPROJECT, ()), ())}


def test_every_core_dependency_has_a_lower_bound_and_make_test_min_installs_them():
    assert set(_core()) >= {"torch", "transformers", "accelerate", "peft", "datasets", "numpy"}
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest-min:", 1)[1].split("\n\n", 1)[0]
    assert "tools/lowest_constraints.py" in recipe and "torch==2.13.0" in recipe
    assert '-m "not slow"' in recipe and "$(VENV_MIN)" in recipe
    assert "test-min" not in makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]  # not part of make test (CI)


def test_readme_matrix_states_the_lower_bounds():
    """The README's tested matrix names, as the lowest version run, each core dependency's lower bound
    (a raised bound and its row change together)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- tested-matrix -->", 1)[1].split("\n\n", 1)[0]
    rows = {_normalise(m.group(1)): (m.group(2), m.group(3))
            for m in re.finditer(r"^\| ([A-Za-z0-9._-]+)(?: \([a-z ]+\))? \| ([^|]+?) \| ([^|]+?) \|", block, re.M)}
    for name, lower in _core().items():
        assert name in rows, f"README tested matrix: no row for {name}"
        low = rows[name][0]
        if name == "torch":
            assert low.startswith("2.13.0"), low  # the one CPU build these machines install
            continue
        assert re.match(rf"{re.escape(lower)}(\.0)*\b", low), f"README: {name} lowest {low}, pyproject says >={lower}"
