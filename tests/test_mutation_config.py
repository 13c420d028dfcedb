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
