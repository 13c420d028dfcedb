"""mutation/modules.toml names files that exist: a renamed source or test module must be renamed
there too, or ``make mutate`` would fail (or silently test less) long after the rename."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_group_names_existing_modules_and_tests():
    groups = tomllib.loads((ROOT / "mutation" / "modules.toml").read_text())["groups"]
    assert groups
    for name, group in groups.items():
        assert group["modules"] and group["tests"], name
        for path in group["modules"]:
            assert (ROOT / path).is_file(), f"{name}: module {path} does not exist"
        for test in group["tests"]:
            assert (ROOT / test.split("::")[0]).is_file(), f"{name}: test {test} does not exist"
        assert len(set(group["tests"])) == len(group["tests"]), f"{name}: a test file is listed twice"


def test_every_mutated_module_is_tested_by_its_own_test_module():
    """A group must run the tests that mirror its modules (``src/deft/a/b.py`` ->
    ``tests/test_a_b.py``, see tests/test_layout.py), else a test split out of a shared file leaves
    the module's mutants to tests that never call it and they survive as false gaps."""
    groups = tomllib.loads((ROOT / "mutation" / "modules.toml").read_text())["groups"]
    for name, group in groups.items():
        files = {t.split("::")[0] for t in group["tests"]}
        for path in group["modules"]:
            parts = Path(path).relative_to("src/deft").with_suffix("").parts
            mirror = "tests/test_" + "_".join(parts) + ".py"
            if (ROOT / mirror).is_file():
                assert mirror in files, f"{name}: add {mirror} (the tests of {path}) to its tests"
