"""Tests of deft.eval.problems: the problems of an evaluation, per benchmark, as the chosen protocol
asks them."""

from deft.eval import load_problems


def test_problems_carry_the_training_system_prompt(figfont_records):
    from deft.data import FIGFONT_SYSTEM_PROMPT

    probs = load_problems(["figfont", str(figfont_records)], scorer="exact,jaro_winkler", limit=3)
    assert list(probs) == ["figfont", str(figfont_records)]  # its stem, figfont, is taken
    for ps in probs.values():
        assert len(ps) == 3
        assert all(p.chat()[0] == {"role": "system", "content": FIGFONT_SYSTEM_PROMPT} for p in ps)
    assert probs[str(figfont_records)][0].scorers == ("exact", "jaro_winkler")
    assert load_problems(["figfont"], limit=2, system="none")["figfont"][0].chat()[0]["role"] == "user"
