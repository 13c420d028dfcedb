"""The text scorers (exact match, Jaro-Winkler, option letters, reasoning-gym tasks) and the token
screen in front of reasoning-gym tasks that evaluate answers, at their borders.

Written to kill mutants of src/deft/eval/scorers_text.py that survived ``make mutate``
(docs/testing.md). Expected values come from the scorers' documented rules and hand computations.
"""

import importlib.util
import inspect
import logging
import sys
import tokenize

import pytest

from deft.eval import scorers_text
from deft.eval.scorers_text import exact_match, is_inert_expression, jaro_winkler, score_mcq, score_rg


# ---------------------------------------------------------------- exact, jaro_winkler, mcq

def test_exact_match_needs_equal_texts_not_ordered_ones():
    # "b" sorts after "a" but is not equal to it: the rule is equality of the stripped, lower-cased texts
    assert exact_match("b", "a") == 0.0
    assert exact_match("a", "b") == 0.0
    assert exact_match(" A ", "a") == 1.0


def test_jaro_winkler_of_a_missing_prediction_is_zero():
    assert jaro_winkler(None, "abc") == 0.0


def test_text_scorers_take_their_answers_by_name():
    # the public signatures: prediction/reference (and task) may be passed by name, the rest by keyword only
    assert score_mcq(prediction="(B)", reference="B") == 1.0
    with pytest.raises(TypeError):
        score_mcq("A", "A", "ABCD")
    assert score_rg(task="basic_arithmetic", prediction=None, reference="3") == 0.0


# ---------------------------------------------------------------- the token screen

@pytest.mark.parametrize("text, ok", [
    # text of more than 2000 characters is refused, 2000 is still screened token by token
    ("x" * 2000, True), ("x" * 2001, False),
    # text Python cannot tokenize: an unclosed bracket (TokenError), a bad dedent (IndentationError)
    ("(1 + 2", False), ("  1\n 2", False),
    # `**` at most twice
    ("x**2 + y**2", True), ("x**2 + y**2 + z**2", False),
    # repetition next to a list
    ("[1] * 3", False), ("[1] + [2]", True),
    # numbers of more than 15 digits; digits in names and strings are not numbers
    ("123456789012345", True), ("1234567890123456", False), ("1.23456789012345", True),
    ("x1234567890123456", True), ("'1234567890123456'", True),
    # "__" only matters in names
    ("'a__b'", True),
    # a call is a name followed by "(": an operator or a number before "(" is no call
    ("1 + (2)", True), ("2 * (3)", True), ("x % 2", True), ("x & y", True),
    # `:=` is refused; a "." not followed by a name is no attribute access (end of a sentence)
    ("x := 5", False), ("x.", True), ("x. 5", True), ("x .5", True),
    # the checks go on after such a "."
    ("x. 5 + open(1)", False), ("x. 5; 6", False),
])
def test_inert_expression_rules(text, ok):
    assert is_inert_expression(text) is ok


@pytest.mark.parametrize("text, ok", [
    # the exponent of `**` may carry a sign
    ("x**-2", True), ("x**+y", True), ("x**-y", True),
    # no exponent at all
    ("x**", False), ("x**-", False),
    # the exponent is a name or a number <= 100 (both borders)
    ("x**y", True), ("x**100", True), ("x**-100", True), ("x**101", False), ("2**200", False),
    ("x**2", True), ("(x**2)", True), ("x**2 % 3", True), ("x**2*3", True),
    # a bracketed exponent is not a name or a number
    ("2**(3)", False),
    # a number float() cannot read: 0xFF is 255 > 100
    ("x**0xFF", False), ("x**0x1000000000000000", False),
    # a tower
    ("9**9**9", False), ("x**y**z", False), ("x**-2**2", False),
])
def test_inert_expression_exponents(text, ok):
    assert is_inert_expression(text) is ok


@pytest.mark.parametrize("text, ok", [
    # "(" right after ")" or "]" calls the result of an expression, wherever it stands
    ("(1)(2)", False), ("x + (1)(2)", False), ("x + [1](2)", False), ("(f)(x) + y", False),
    ("](1)[", False),
    # brackets that are no call: the first and the last token may both be brackets
    ("(1) + (2)", True), ("[1] + (2)", True), ("(x) % 2", True), ("(x) != 2", True),
    ("(1)[0]", True),
])
def test_inert_expression_calls_of_expressions(text, ok):
    assert is_inert_expression(text) is ok


_TOKEN_TYPES_3_12 = {"FSTRING_START": 1001, "FSTRING_MIDDLE": 1002, "FSTRING_END": 1003,
                     "TSTRING_START": 1004, "TSTRING_MIDDLE": 1005, "TSTRING_END": 1006}


def _tokens_3_12(prefix: str):
    """The tokens of ``{prefix}'{x}'`` as Python >= 3.12 (t-strings: 3.14) yields them."""
    up = prefix.upper()
    kind = "FSTRING" if up == "F" else "TSTRING"
    types = _TOKEN_TYPES_3_12 if sys.version_info < (3, 12) else {
        k: getattr(tokenize, k) for k in _TOKEN_TYPES_3_12 if hasattr(tokenize, k)}
    return [tokenize.TokenInfo(types[f"{kind}_START"], f"{prefix}'", (1, 0), (1, 2), ""),
            tokenize.TokenInfo(tokenize.OP, "{", (1, 2), (1, 3), ""),
            tokenize.TokenInfo(tokenize.NAME, "x", (1, 3), (1, 4), ""),
            tokenize.TokenInfo(tokenize.OP, "}", (1, 4), (1, 5), ""),
            tokenize.TokenInfo(types[f"{kind}_END"], "'", (1, 5), (1, 6), ""),
            tokenize.TokenInfo(tokenize.ENDMARKER, "", (2, 0), (2, 0), "")]


@pytest.mark.parametrize("prefix", ["f", "t"])
def test_f_and_t_strings_are_refused_as_newer_pythons_tokenize_them(prefix, monkeypatch):
    """Python 3.12 tokenizes f-strings (3.14: t-strings) into FSTRING_*/TSTRING_* tokens, not STRING:
    the screen refuses them by token name. On an older Python the token stream of 3.12 is replayed."""
    if sys.version_info < (3, 12) or not hasattr(tokenize, f"{'F' if prefix == 'f' else 'T'}STRING_START"):
        for name, number in _TOKEN_TYPES_3_12.items():
            monkeypatch.setitem(tokenize.tok_name, number, name)
        monkeypatch.setattr(tokenize, "generate_tokens", lambda readline: iter(_tokens_3_12(prefix)))
    assert is_inert_expression(f"{prefix}'{{x}}'") is False


def test_factorial_is_refused_as_newer_pythons_tokenize_it(monkeypatch):
    """The docstring refuses "!" (sympy's factorial): an ERRORTOKEN up to Python 3.11, an OP token
    (PEP 701) since 3.12. On an older Python the token stream of 3.12 is replayed."""
    if sys.version_info < (3, 12):
        toks = [tokenize.TokenInfo(tokenize.NUMBER, "5", (1, 0), (1, 1), "5!"),
                tokenize.TokenInfo(tokenize.OP, "!", (1, 1), (1, 2), "5!"),
                tokenize.TokenInfo(tokenize.ENDMARKER, "", (2, 0), (2, 0), "")]
        monkeypatch.setattr(tokenize, "generate_tokens", lambda readline: iter(toks))
    assert is_inert_expression("5!") is False


# ---------------------------------------------------------------- reasoning-gym tasks of one's own

_TASK = '''
from dataclasses import dataclass

from reasoning_gym.dataset import ProceduralDataset


@dataclass
class Config:
    size: int = 1


class Task(ProceduralDataset):
    """{doc}"""

    def __init__(self, config):
        super().__init__(config, seed=0, size=1)

    def __getitem__(self, idx):
        return {{"question": "q", "answer": "1", "metadata": {{}}}}

    def score_answer(self, answer, entry):
        return {body}
'''
# a task that reads its score from the answer (any float, and a ValueError for text), and one that
# says it evaluates answers (the source mentions eval( like such tasks) but gives 1.0 to everything
_PLAIN = _TASK.format(doc="The score is the answer read as a float.", body="float(answer)")
_EVALUATING = _TASK.format(doc="Stands for tasks that call eval(answer).", body="1.0")


@pytest.fixture
def own_tasks(tmp_path, monkeypatch):
    """Registers the tasks ``deft_plain`` and ``deft_evaluating`` with reasoning-gym for one test."""
    from reasoning_gym.factory import DATASETS

    for name, source in (("deft_plain", _PLAIN), ("deft_evaluating", _EVALUATING)):
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        monkeypatch.setitem(DATASETS, name, (module.Task, module.Config))
    scorers_text._rg_task.cache_clear()
    yield
    scorers_text._rg_task.cache_clear()


@pytest.mark.parametrize("answer, value", [
    ("1", 1.0), ("0.25", 0.25), ("1.5", 1.0), ("-0.5", 0.0), ("nan", 0.0), ("inf", 0.0), ("-inf", 0.0),
    ("not a number", 0.0),  # score_answer raises ValueError: a wrong answer
])
def test_rg_scores_are_clipped_to_the_unit_interval(own_tasks, answer, value):
    assert score_rg("deft_plain", f"<answer>{answer}</answer>", "1") == value


def test_rg_missing_prediction_scores_zero(own_tasks):
    assert score_rg("deft_plain", None, "1") == 0.0
    assert score_rg("deft_evaluating", None, "1") == 0.0


def test_rg_failing_task_is_logged_with_its_traceback(own_tasks, caplog):
    with caplog.at_level(logging.DEBUG, logger=scorers_text.__name__):
        assert score_rg("deft_plain", "<answer>oops</answer>", "1") == 0.0
    (record,) = [r for r in caplog.records if "score_answer failed" in r.getMessage()]
    assert record.levelno == logging.DEBUG and record.exc_info is not None
    assert record.exc_info[0] is ValueError


def test_rg_valid_answers_pass_the_screen(own_tasks):
    # "5!" fails the screen (sympy's factorial): scored only when it is the reference or a valid answer
    entry = {"answer": "120", "metadata": {"valid_answers": ["5!", "2*60"]}}
    assert score_rg("deft_evaluating", "<answer>5!</answer>", "120", entry=entry) == 1.0
    assert score_rg("deft_evaluating", "<answer>6!</answer>", "120", entry=entry) == 0.0
    assert score_rg("deft_evaluating", "<answer>5!</answer>", "120", entry={"answer": "120"}) == 0.0
    assert score_rg("deft_evaluating", "<answer>5!</answer>", "5!") == 1.0
    # the task that does not evaluate answers scores "5!" itself (a ValueError: 0)
    assert score_rg("deft_plain", "<answer>5!</answer>", "1") == 0.0
    assert score_rg("deft_plain", "<answer>0.5</answer>", "1") == 0.5


def test_rg_task_is_looked_up_once(own_tasks, record_calls):
    """Reading a task's source (for the screen) happens once per task, not once per answer."""
    calls = record_calls(inspect, "getsource")
    score_rg("deft_plain", "<answer>1</answer>", "1")
    n = len(calls)
    assert n >= 1
    score_rg("deft_plain", "<answer>1</answer>", "1")
    assert len(calls) == n


@pytest.mark.parametrize("error", [OSError, TypeError])
def test_rg_task_without_readable_source_is_screened(own_tasks, monkeypatch, error):
    """A task whose source cannot be read (an install without .py files) may evaluate answers."""
    def unreadable(obj):
        raise error("no source")

    monkeypatch.setattr(inspect, "getsource", unreadable)
    assert scorers_text._rg_task("deft_plain")[1] is True
    # so a non-inert answer is refused before the task sees it (the task would give 0.5 / 1.0)
    assert score_rg("deft_plain", "<answer>0.5!</answer>", "1") == 0.0
    assert score_rg("deft_plain", "<answer>0.5</answer>", "1") == 0.5
