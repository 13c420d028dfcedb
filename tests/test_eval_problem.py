"""Tests of deft.eval.problem: one evaluation problem and a prompt written out as text."""

from deft.eval.problem import MATH_PROMPT_SUFFIX, Problem, RawPrompt


def test_the_first_scorer_is_primary_and_every_scorer_scores():
    p = Problem(benchmark="figfont", id="0", prompt="word?", reference="HELLO",
                scorers=("exact", "jaro_winkler"))
    assert p.scorer == "exact"
    assert p.score("HELLO") == {"exact": 1.0, "jaro_winkler": 1.0}
    scores = p.score("HELLA")
    assert scores["exact"] == 0.0 and 0.8 < scores["jaro_winkler"] < 1.0
    assert p.score(None)["exact"] == 0.0


def test_the_context_reaches_the_scorer():
    options = {"A": "yes", "B": "no"}
    p = Problem(benchmark="medical/x", id="1", prompt="q", reference="B", scorers=("mcq",),
                context={"options": options})
    assert p.score("The answer is \\boxed{B}") == {"mcq": 1.0}
    assert p.score("The answer is \\boxed{A}") == {"mcq": 0.0}


def test_chat_and_generation_input():
    plain = Problem(benchmark="b", id="0", prompt="2+2?", reference="4")
    assert plain.chat() == [{"role": "user", "content": "2+2?"}] == plain.generation_input()
    turns = ({"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"})
    chat = Problem(benchmark="b", id="0", prompt="2+2?", reference="4", messages=turns)
    assert chat.chat() == [dict(t) for t in turns] and chat.chat() is not chat.chat()
    raw = Problem(benchmark="b", id="0", prompt="2+2?", reference="4", raw_prompt="<|im_start|>user\n2+2?")
    assert isinstance(raw.generation_input(), RawPrompt) and raw.generation_input() == "<|im_start|>user\n2+2?"
    assert MATH_PROMPT_SUFFIX.endswith("within \\boxed{}.")
