"""mutation/killers.py: a mutant is first tried against the tests that killed its neighbours
(same line, then same definition, then the group's most frequent killers)."""

from mutation_helpers import load_mutation_module

_killers = load_mutation_module("killers")
KillerMemory, definition_at = _killers.KillerMemory, _killers.definition_at
definitions_of, killer_of = _killers.definitions_of, _killers.killer_of
first_stage_of, mark_checked, mark_first_stage = (_killers.first_stage_of, _killers.mark_checked,
                                                  _killers.mark_first_stage)

SOURCE = '''\
X = 1


def f(a):
    return a + 1


class C:
    def m(self, b):
        def inner():
            return b * 2
        return inner()
'''


def test_killer_is_the_first_failure_of_the_short_summary():
    output = ("..F\n=== short test summary info ===\n"
              "FAILED tests/t.py::test_a[power:alpha=0.25,x - y] - AssertionError: 1 != 2\n"
              "FAILED tests/t.py::test_b - ValueError\n!!! stopping after 1 failures !!!\n1 failed in 0.1s\n")
    assert killer_of(output) == "tests/t.py::test_a[power:alpha=0.25,x - y]"
    assert killer_of("ERROR tests/t_other.py - ImportError: no module\n") == "tests/t_other.py"
    assert killer_of("FAILED tests/t.py::test_c\n") == "tests/t.py::test_c"
    assert killer_of("3 passed in 0.1s\n") is None
    # brackets in the message don't stretch the id
    assert killer_of("FAILED t.py::a[x] - assert [1] == [2]\n") == "t.py::a[x]"


def test_a_line_belongs_to_its_innermost_definition():
    spans = definitions_of(SOURCE)
    assert definition_at(spans, 1) == ""
    assert definition_at(spans, 5) == "f"
    assert definition_at(spans, 9) == "C.m"
    assert definition_at(spans, 11) == "C.m.inner"
    assert definition_at(spans, 12) == "C.m"


def test_candidates_come_from_the_same_line_then_definition_then_the_most_frequent(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(SOURCE)
    memory = KillerMemory(limit=3)
    assert memory.candidates(module, 5) == []
    memory.record(module, 12, "t::frequent")
    memory.record(module, 1, "t::frequent")
    memory.record(module, 11, "t::inner")  # C.m.inner, not C.m
    memory.record(module, 9, "t::method_old")
    memory.record(module, 9, "t::method_new")
    memory.record(module, 12, "t::line12")
    # line 12 (C.m): its own killer, then C.m's most recent ones, then the most frequent
    assert memory.candidates(module, 12) == ["t::line12", "t::frequent", "t::method_new"]
    # line 5 (f): nothing of its own; the most frequent killers of the group
    assert memory.candidates(module, 5)[0] == "t::frequent"
    assert len(memory.candidates(module, 5)) == 3
    # a killer seen again moves to the front of its line
    memory.record(module, 12, "t::frequent")
    assert memory.candidates(module, 12)[0] == "t::frequent"
    one = KillerMemory(limit=1)
    one.record(module, 12, "t::a")
    one.record(module, 12, "t::b")
    assert one.candidates(module, 12) == ["t::b"]
    assert KillerMemory().limit == 3


def test_a_first_stage_kill_is_recorded_until_checked():
    output = "F\nFAILED t.py::a[x] - no\n\n[forkserver] decided by stage 1/2\n"
    first = ["t.py::a[x]", "t.py::b[p - q]"]
    marked = mark_first_stage(output, first)
    assert marked.startswith(output.rstrip()) and first_stage_of(marked) == first
    checked = mark_checked(marked)
    assert first_stage_of(checked) is None and _killers.FIRST_STAGE_CHECKED in checked
    assert first_stage_of(output) is None and first_stage_of("") is None
    assert killer_of(checked) == "t.py::a[x]"
