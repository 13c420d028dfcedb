"""Record format, readers and writers: every problem located as FILE:LINE."""

import pytest

from deft.data import RecordError, normalize_record, parse_key_map, record_messages


def test_both_shapes_normalise():
    rec = normalize_record({"prompt": "p", "response": "r", "system": "s", "answer": 4, "id": 7, "weight": 2,
                            "token_weights": [1, 0.5], "task": "math", "extra": 1})
    assert rec == {"prompt": "p", "response": "r", "system": "s", "answer": "4", "task": "math", "id": 7,
                   "weight": 2.0, "token_weights": [1.0, 0.5]}
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert normalize_record({"messages": msgs}) == {"messages": msgs}
    assert record_messages({"prompt": "p", "response": "r", "system": "s"}) == [
        {"role": "system", "content": "s"}, {"role": "user", "content": "p"}, {"role": "assistant", "content": "r"}]


def test_other_shapes_and_key_map():
    share = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
    assert normalize_record(share)["messages"][1] == {"role": "assistant", "content": "yo"}
    alpaca = {"instruction": "Do", "input": "this", "output": "done"}
    assert normalize_record(alpaca) == {"prompt": "Do\n\nthis", "response": "done"}
    km = parse_key_map(["prompt=question", "response=output"])
    assert normalize_record({"question": "q", "output": "o", "src": "x"}, km, keep_extra=True) == {
        "prompt": "q", "response": "o", "metadata": {"src": "x"}}
    with pytest.raises(ValueError, match="unknown key"):
        parse_key_map(["promt=question"])


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p"}, "missing key 'response'"),
    ({"prompt": "p", "response": " \n"}, "empty response"),
    ({"messages": [{"role": "user", "content": "a"}]}, "last message is a user turn"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]}, "empty response"),
    ({"messages": [{"role": "bot", "content": "a"}]}, "role is 'bot'"),
    ({"messages": []}, "non-empty list"),
    ({"prompt": "p", "response": "r", "messages": []}, "both"),
    ({"prompt": "p", "response": "r", "weight": float("nan")}, "'weight'"),
    ({"prompt": "p", "response": "r", "token_weights": [1, -1]}, "token_weights\\[1\\]"),
    ({"prompt": 3, "response": "r"}, "'prompt' must be a string"),
    ([1, 2], "expected a JSON object"),
])
def test_invalid_records_say_what_is_wrong(row, message):
    with pytest.raises(RecordError, match=message):
        normalize_record(row)
