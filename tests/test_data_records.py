"""Record format, readers and writers: every problem located as FILE:LINE."""

import json

import pytest

from deft.data import (
    DataError,
    RecordError,
    iter_records,
    normalize_record,
    parse_key_map,
    record_messages,
    validate_source,
    write_jsonl,
)
from deft.data.readers import iter_rows


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


BAD = [
    '{"prompt": "a", "response": "b"}',
    '{"prompt": "a", "response": ""}',
    '{"prompt": "a", "response": "b"',
    '',
    '{"question": "a", "answer": "b"}',
    '{"prompt": "a", "response": "b", "weight": "high"}',
    '{"prompt": "c", "response": "d"}',
]


def test_all_problems_reported_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(BAD) + "\n")
    with pytest.raises(DataError) as info:
        validate_source(str(path))
    assert info.value.problems == [
        f"{path}:2: empty response",
        f"{path}:3: malformed JSON (Expecting ',' delimiter at column 32)",
        f"{path}:5: missing key 'prompt' and 'response' (need 'messages', 'prompt' + 'response' or 'prompt' + "
        "'completion'; columns are: question, answer; map other names with --map KEY=COLUMN)",
        f"{path}:6: 'weight' must be a finite number >= 0 (got 'high')",
    ]
    assert "4 invalid records" in str(info.value) and "\n" not in str(info.value)
    report = validate_source(str(path), skip_invalid=True, max_problems=2)
    assert (report.total, report.valid, report.invalid, len(report.problems)) == (6, 2, 4, 2)
    assert report.problem_lines()[-1] == "... and 2 more invalid records"


def test_readers_json_parquet_and_datasets_dir(tmp_path):
    rows = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(3)]
    (tmp_path / "a.json").write_text(json.dumps({"data": rows}))
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "ds"))
    for source in ("a.json", "a.parquet", "ds"):
        got = list(iter_records(str(tmp_path / source)))
        assert [r for _, r in got] == rows, source
        assert got[2][0] == f"{tmp_path / source}: record 3"
    with pytest.raises(ValueError, match="no split 'test'"):
        list(iter_rows(str(tmp_path / "ds"), split="test"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        iter_rows(str(tmp_path / "missing.jsonl"))


def test_write_jsonl_is_atomic(tmp_path):
    out = tmp_path / "out.jsonl"
    assert write_jsonl([{"a": (1, 2)}, {"b": {3}}], out) == 2
    assert out.read_text().splitlines() == ['{"a": [1, 2]}', '{"b": [3]}']

    def failing():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(failing(), out)
    assert out.read_text().splitlines() == ['{"a": [1, 2]}', '{"b": [3]}']  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left
