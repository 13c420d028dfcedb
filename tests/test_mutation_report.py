"""The mutation report's block of docs/testing.md (mutation/report.py): scores per module and the
surviving mutants grouped under their reason, written between the page's markers."""

import pytest
from mutation_helpers import ROOT, load_mutation_module

_report = load_mutation_module("report")
DOCS_END, DOCS_START = _report.DOCS_END, _report.DOCS_START
docs_section, match_equivalent, replace_docs_block = (_report.docs_section, _report.match_equivalent,
                                                      _report.replace_docs_block)


def _survivor(line, before, after, reason=None, annotation=False, module="src/deft/m.py"):
    return {"module": module, "line": line, "operator": "core/X", "before": before, "after": after,
            "equivalent": reason, "annotation": annotation}


def test_docs_section_lists_scores_and_groups_survivors_by_reason():
    modules = {"src/deft/m.py": {"group": "g", "mutants": 11, "killed": 6, "survived": 1, "equivalent": 3,
                                 "error": 1, "score": 85.7}}
    survivors = [_survivor(9, "a == 1", "a >= 1", "a is never above 1"),
                 _survivor(4, "x[-1]", "x[1]", "x is 2-D"), _survivor(5, "y[-1]", "y[1]", "x is 2-D"),
                 _survivor(7, "b or c", "b and c"),
                 _survivor(2, "int | None", "int & None", annotation=True)]
    text = docs_section(modules, survivors, ["group `h`: not run"])
    assert "| `src/deft/m.py` | g | 11 | 6 | 3 | 1 | 1 | 85.7% |" in text  # errors apart from survivors
    assert "- group `h`: not run" in text
    # one heading per reason, its mutants under it in line order; annotation mutants only counted
    assert text.count("- x is 2-D") == 1
    assert text.index("line 4: `x[-1]` → `x[1]`") < text.index("line 5: `y[-1]` → `y[1]`")
    assert "- **not killed**\n  - line 7: `b or c` → `b and c`" in text
    assert "int & None" not in text and "- 1 mutants inside type annotations" in text


def test_replace_docs_block_keeps_the_rest_of_the_page():
    page = f"# Title\n\nintro\n\n{DOCS_START}\n\nold table\n\n{DOCS_END}\n\n## After\n"
    new = replace_docs_block(page, "new table\n")
    assert new == f"# Title\n\nintro\n\n{DOCS_START}\n\nnew table\n\n{DOCS_END}\n\n## After\n"
    assert replace_docs_block(new, "new table\n") == new
    with pytest.raises(ValueError, match="no .* block"):
        replace_docs_block("# no markers\n", "x")


def test_the_testing_page_has_the_block():
    page = (ROOT / "docs" / "testing.md").read_text()
    assert page.count(DOCS_START) == 1 and page.count(DOCS_END) == 1


def test_an_equivalent_record_matches_by_line_or_by_operator():
    import re

    records = [{"module": "m", "before": "a == 1", "after": "a >= 1", "operators": None, "reason": "one"},
               {"module": "m", "before": "x[-1]", "after": "", "operators": re.compile("Unary_.*"), "reason": "two"}]
    row = {"module": "m", "before": "a == 1", "after": "a >= 1", "operator": "Cmp"}
    assert match_equivalent(records, row) == "one"
    assert match_equivalent(records, {**row, "after": "a > 1"}) is None
    assert match_equivalent(records, {"module": "m", "before": "x[-1]", "after": "x[1]",
                                      "operator": "Unary_Del"}) == "two"
    assert match_equivalent(records, {"module": "n", "before": "x[-1]", "after": "x[1]",
                                      "operator": "Unary_Del"}) is None


# two mutants of the same line `return False` of a module, told apart by the line above each
_DIFF_160 = """--- mutation diff ---
--- a/src/m.py
+++ b/src/m.py
@@ -157,7 +157,7 @@
         pred = list(parse(prediction))
         if not gold or not pred:
-            return False
+            return True
         return bool(verify(gold, pred))
     except Exception:
         log.debug("comparison failed")"""
_DIFF_164 = """--- mutation diff ---
--- a/src/m.py
+++ b/src/m.py
@@ -161,6 +161,6 @@
     except Exception:
         log.debug("comparison failed")

-        return False
+        return True
"""


def test_diff_row_reads_the_changed_line_and_the_nearest_line_above_it():
    row = _report.diff_row("src/m.py", "core/ReplaceFalseWithTrue", _DIFF_160)
    assert row == {"module": "src/m.py", "operator": "ReplaceFalseWithTrue", "before": "return False",
                   "after": "return True", "above": "if not gold or not pred:"}
    # a blank line between is skipped; the context lines after the mutant don't count
    assert _report.diff_row("src/m.py", "X", _DIFF_164)["above"] == 'log.debug("comparison failed")'


def test_a_record_with_above_matches_only_the_line_below_that_text():
    record = {"module": "src/m.py", "before": "return False", "after": "return True", "operators": None,
              "above": "log.debug(", "reason": "unreachable except clause"}
    rows = [_report.diff_row("src/m.py", "X", d) for d in (_DIFF_160, _DIFF_164)]
    assert [match_equivalent([record], r) for r in rows] == [None, "unreachable except clause"]
    assert [match_equivalent([{**record, "above": ""}], r) for r in rows] == ["unreachable except clause"] * 2


def test_load_equivalent_refuses_an_unknown_key(tmp_path):
    path = tmp_path / "equivalent.toml"
    path.write_text('[[equivalent]]\nmodule = "m"\nbefore = "a"\nafter = "b"\nabvoe = "x"\nreason = "r"\n')
    with pytest.raises(SystemExit, match=r"entry 1: unknown key 'abvoe'"):
        _report.load_equivalent(path)


def test_a_module_holding_a_mutant_that_breaks_its_syntax_stops_the_report_with_its_path(tmp_path):
    # another group's run may have a mutant applied to its copy while a report is being built
    module = tmp_path / "m.py"
    module.write_text("from __future__ import annotations\nx: int = {+a(), **b}\n")
    with pytest.raises(SystemExit, match=r"m\.py: not valid Python .*line 2.*rebuild the report"):
        _report.annotation_spans(module)
    module.write_text("from __future__ import annotations\nx: int = 1\n")
    assert _report.annotation_spans(module) == [((2, 3), (2, 6))]
