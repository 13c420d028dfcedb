"""Tests of deft.eval.scorers_text: text scorers: ``mcq`` (one option letter), ``exact``,
``jaro_winkler`` and ``rg:<task>`` (reasoning-gym's own verifiers, behind a screen for tasks that
evaluate the answer text)."""

import pytest

from deft.eval import score
from deft.eval.scorers import is_inert_expression


@pytest.mark.parametrize("a, b, value", [
    ("MARTHA", "MARHTA", 0.9611), ("DWAYNE", "DUANE", 0.84), ("DIXON", "DICKSONX", 0.8133),
    ("martha", " MARHTA ", 0.9611), ("ABC", "ABC", 1.0), ("ABC", "XYZ", 0.0),
])
def test_jaro_winkler_known_pairs(a, b, value):
    assert score("jaro_winkler", a, b) == pytest.approx(value, abs=5e-5)


def test_rg_scorer_never_executes_the_answer(tmp_path):
    import reasoning_gym

    item = reasoning_gym.create_dataset("countdown", size=1, seed=1)[0]
    target = tmp_path / "pwned"
    for payload in (f"__import__('os').system('touch {target}')", f"open('{target}', 'w')",
                    f"open('{target}', 'w')!", "(lambda: 1)()", "9**9**9**9"):
        assert score("rg:countdown", f"<answer>{payload}</answer>", item["answer"], entry=item) == 0.0
    assert not target.exists()


@pytest.mark.parametrize("text, ok", [
    ("(3 + 5) * 3", True), ("['a', 'b']", True), ("x**2/2 + C", True), ("sin(x) + sqrt(2)", True),
    ("_ Q _ _\n_ _ Q _", True), ("__import__('os')", False), ("().__class__", False), ("a.b", False),
    ("open('f')", False), ("f'{x}'", False), ("lambda: 1", False), ("9**9**9", False),
    ("'a' * 10**9", False), ("5!", False), ("[x for x in y]", False),
])
def test_is_inert_expression(text, ok):
    assert is_inert_expression(text) is ok
