"""The tests mirror src/: every module with logic has its own test module.

``src/deft/<package>/<module>.py`` is tested in ``tests/test_<package>_<module>.py`` and a top-level
``src/deft/<module>.py`` in ``tests/test_<module>.py``. A module has logic when it defines a
function or a class; the few that need no mirror are listed in :data:`EXEMPT` with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "deft"
TESTS = ROOT / "tests"

EXEMPT = {
    "__init__.py": "re-exports and the lazy attribute loader; every name is tested where it is defined",
    "data/__init__.py": "re-exports (lazy); tested where each name is defined",
    "eval/__init__.py": "re-exports (lazy); tested where each name is defined",
    "train/__init__.py": "re-exports (lazy); tested where each name is defined",
    "train/stats.py": "tested against hand-computed sums by its anchor, tests/test_anchor_stats.py",
}


def mirror_name(module: Path) -> str:
    """``tests/`` file name that mirrors ``module`` (a path relative to ``src/deft``)."""
    return "test_" + "_".join(module.with_suffix("").parts) + ".py"


def has_logic(path: Path) -> bool:
    """Whether a source file defines a function or a class (at any depth)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in ast.walk(tree))


def modules_without_mirror() -> list[str]:
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.as_posix() in EXEMPT or not has_logic(path):
            continue
        if not (TESTS / mirror_name(rel)).is_file():
            missing.append(f"{rel.as_posix()} -> tests/{mirror_name(rel)}")
    return missing


def test_mirror_names():
    assert mirror_name(Path("eval/scorers.py")) == "test_eval_scorers.py"
    assert mirror_name(Path("config.py")) == "test_config.py"
    assert mirror_name(Path("data/sources_math.py")) == "test_data_sources_math.py"


def test_logic_is_a_def_or_a_class(tmp_path):
    (tmp_path / "a.py").write_text('"""Only names."""\nfrom .b import c\n__all__ = ["c"]\nX = 1\n')
    (tmp_path / "b.py").write_text("if True:\n    def c():\n        return 1\n")
    (tmp_path / "d.py").write_text("class D:\n    pass\n")
    assert [has_logic(tmp_path / n) for n in ("a.py", "b.py", "d.py")] == [False, True, True]


def test_every_module_with_logic_has_a_mirror_test_module():
    missing = modules_without_mirror()
    assert not missing, ("modules with no mirror test file (move their tests there, see docs/testing.md):\n"
                         + "\n".join(missing))


def test_exemptions_are_current():
    for rel, why in EXEMPT.items():
        assert (SRC / rel).is_file(), f"EXEMPT names {rel}, which no longer exists"
        assert why.strip()
        assert not (TESTS / mirror_name(Path(rel))).is_file(), f"{rel} has a mirror test file now: drop it from EXEMPT"
