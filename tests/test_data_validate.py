"""Tests of deft.data.validate: validation with every problem located: ``FILE:LINE: what is wrong``."""

import json

import pytest

from deft.data import DataError, validate_source

from data_readers_helpers import _jsonl, _problems


def test_non_utf8_and_bom_in_jsonl_are_named_with_the_line(tmp_path):
    path = tmp_path / "enc.jsonl"
    good = json.dumps({"prompt": "p", "response": "r"}).encode()
    bad = b'{"prompt": "caf\xe9", "response": "r"}'
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + good + b"\n" + bad + b"\n\n" + b"\xef\xbb\xbf" + good + b"\n")
    assert _problems(path) == [
        f"{path}:3: not UTF-8 (byte 0xe9 at column 16); re-save the file as UTF-8",
        f"{path}:5: a byte-order mark (BOM) at column 1, inside the file (files joined together?); remove it or "
        "re-save the file as UTF-8",
    ]
    report = validate_source(str(path), skip_invalid=True)
    assert (report.valid, report.invalid) == (2, 2)  # the leading BOM is accepted; the blank line 4 skipped


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p", "completion": "r", "response": "r"}, "both 'completion' and 'response'"),
    ({"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "user", "content": "r"}]},
     "'completion' must hold the assistant's messages only"),
    ({"prompt": 3, "completion": [{"role": "assistant", "content": "r"}]}, "needs 'prompt' as a list of messages"),
    ({"prompt": [{"role": "user", "content": "p"}], "completion": []}, "'completion' must be a non-empty list"),
    ({"conversations": [{"from": "robot", "value": "x"}]}, "conversations\\[0\\].from is 'robot'"),
    ({"text": "just text"}, "a plain 'text' row has no prompt/response split"),
    ({"prompt": "p", "chosen": "a", "rejected": "b"}, "--map response=chosen"),
])
def test_bad_trl_and_sharegpt_rows_say_what_is_wrong(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    _jsonl(path, [{"prompt": "ok", "completion": "fine"}, row])
    [problem] = _problems(path)
    assert problem.startswith(f"{path}:2: ") and len(problem.splitlines()) == 1
    assert pytest.importorskip("re").search(message, problem), problem


def test_read_records_is_what_probe_and_eval_read_with(tmp_path):
    from deft.data import read_records

    path = tmp_path / "r.csv"
    path.write_text("prompt,completion\na,b\nc,\n")
    with pytest.raises(DataError,
                       match=r"1 invalid record in .*r.csv \(first: .*r.csv: record 2: missing key 'response'"):
        read_records(str(path))
    records, report = read_records(str(path), skip_invalid=True)
    assert records == [(f"{path}: record 1", {"prompt": "a", "response": "b"})] and report.invalid == 1
    assert read_records(str(path), require_response=False)[0][1] == (f"{path}: record 2", {"prompt": "c"})


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
