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


def _nearest_above(lines, i):
    return next((ln for ln in reversed(lines[:i]) if ln), "")


def test_an_equivalence_record_of_a_repeated_line_says_which_occurrence_it_proves():
    """A record matches by the line's text; where the module has that line more than once, a proof
    for one occurrence would silently excuse the others, so the record names its occurrence with
    ``above`` (exactly one match) or states ``every_occurrence = true``."""
    records = tomllib.loads((ROOT / "mutation" / "equivalent.toml").read_text())["equivalent"]
    for i, r in enumerate(records, 1):
        lines = [ln.strip() for ln in (ROOT / r["module"]).read_text().splitlines()]
        where = [k for k, ln in enumerate(lines) if ln == r["before"].strip()]
        name = f"equivalent.toml entry {i} ({r['module']}: {r['before']!r})"
        if "above" in r:
            hits = [k for k in where if r["above"] in _nearest_above(lines, k)]
            assert len(hits) == 1, f"{name}: 'above' must single out one line, found {len(hits)}"
        elif len(where) > 1:
            assert r.get("every_occurrence") is True, \
                f"{name}: the line occurs {len(where)} times; add above = \"...\" or every_occurrence = true"
