"""One record reader for every format people have: TRL prompt/completion (plain and conversational),
messages, Alpaca, ShareGPT; JSONL, JSON arrays, Parquet, CSV and save_to_disk directories; ``key_map``;
the same located one-line errors everywhere (``FILE:LINE`` or ``FILE: record N``), non-UTF-8 and BOMs."""

import json

import pytest

from deft.data import IGNORE_INDEX, RecordError, iter_records, tokenize_to_dataset, write_jsonl
from deft.data.readers import check_output_path, iter_rows

from data_readers_helpers import _jsonl, _problems, tiny_tokenizer

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


PAIRS = [("What is 2+2?", "4"), ("Name a colour.", "Blue")]


AS_PROMPT = [{"prompt": p, "response": r} for p, r in PAIRS]


AS_MESSAGES = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]} for p, r in PAIRS]


def _json(path, rows):
    path.write_text(json.dumps(rows, indent=1))


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _csv(path, rows, sep=","):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=sep)
        w.writeheader()
        w.writerows(rows)


def _disk(path, rows):
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(path))


FORMATS = [  # (file name, writer, rows, key_map, the normalised records)
    ("trl.jsonl", _jsonl, [{"prompt": p, "completion": r} for p, r in PAIRS], None, AS_PROMPT),
    ("trl_chat.jsonl", _jsonl, [{"prompt": [{"role": "user", "content": p}],
                                 "completion": [{"role": "assistant", "content": r}]} for p, r in PAIRS],
     None, AS_MESSAGES),
    ("messages.jsonl", _jsonl, AS_MESSAGES, None, AS_MESSAGES),
    ("alpaca.json", _json, [{"instruction": p, "input": "", "output": r} for p, r in PAIRS], None, AS_PROMPT),
    ("sharegpt.json", _json, [{"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": r}]}
                              for p, r in PAIRS], None, AS_MESSAGES),
    ("rows.parquet", _parquet, [{"question": p, "output": r} for p, r in PAIRS],
     {"prompt": "question", "response": "output"}, AS_PROMPT),
    ("trl.csv", _csv, [{"prompt": p, "completion": r} for p, r in PAIRS], None, AS_PROMPT),
    ("mapped.tsv", lambda p, rows: _csv(p, rows, "\t"), [{"q": p, "a": r} for p, r in PAIRS],
     {"prompt": "q", "completion": "a"}, AS_PROMPT),
    ("saved", _disk, [{"prompt": p, "completion": r} for p, r in PAIRS], None, AS_PROMPT),
]


@pytest.mark.parametrize("name, write, rows, key_map, expected", FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_gives_the_same_records_and_labels(tmp_path, name, write, rows, key_map, expected):
    path = tmp_path / name
    write(path, rows)
    got = list(iter_records(str(path), key_map=key_map))
    assert [r for _, r in got] == expected
    line_based = name.endswith(".jsonl")
    assert got[1][0] == (f"{path}:2" if line_based else f"{path}: record 2")
    tok = tiny_tokenizer()
    tok.chat_template = CHAT
    for template, close in (("chat", "<|im_end|>"), ("plain", "</s>")):
        ds, report = tokenize_to_dataset(str(path), tok, key_map=key_map, template=template)
        assert report.valid == 2
        for row, (prompt, response) in zip(ds, PAIRS):
            if template == "chat":
                text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>\n"
            else:  # plain: BOS? the tiny tokenizer adds none; prompt line, response, EOS
                text = f"{prompt}\n{response}</s>"
            assert row["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
            labelled = [i for i in row["labels"] if i != IGNORE_INDEX]
            assert labelled == tok(response + close, add_special_tokens=False)["input_ids"], (name, template)


def test_json_array_csv_and_parquet_errors_name_the_record(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"prompt": "p", "response": "r"}, {"prompt": "p"}]).encode())
    assert _problems(arr) == [f"{arr}: record 2: missing key 'response' (need 'messages', 'prompt' + 'response' or "
                              f"'prompt' + 'completion'; columns are: prompt; map other names with --map KEY=COLUMN)"]
    enc = tmp_path / "enc.json"
    enc.write_bytes(b'[{"prompt": "p", "response": "r"},\n {"prompt": "\xff", "response": "r"}]')
    with pytest.raises(ValueError,
                       match=r"enc.json:2: not UTF-8 \(byte 0xff at column 14\); re-save the file as UTF-8$"):
        list(iter_rows(str(enc)))
    csv_file = tmp_path / "a.csv"
    csv_file.write_bytes(b"\xef\xbb\xbfprompt,response,weight\np,r,2\n\np,r,3,extra\np,,1\np,r,-1\n")
    assert [r for _, r in iter_records(str(csv_file))][0] == {"prompt": "p", "response": "r", "weight": 2.0}
    assert _problems(csv_file) == [
        f"{csv_file}: record 2: 4 cells but the header names 3 columns (line 4; quote cells that hold the delimiter)",
        f"{csv_file}: record 3: missing key 'response' (need 'messages', 'prompt' + 'response' or 'prompt' + "
        f"'completion'; columns are: prompt, weight; map other names with --map KEY=COLUMN)",
        f"{csv_file}: record 4: 'weight' must be a finite number >= 0 (got '-1')",
    ]
    bad_csv = tmp_path / "b.csv"
    bad_csv.write_bytes(b"prompt,response\np,r\nq,caf\xe9\n")
    with pytest.raises(ValueError, match=r"b.csv:3: not UTF-8 \(byte 0xe9 at column 6\)"):
        list(iter_rows(str(bad_csv)))
    pq = tmp_path / "a.parquet"
    _parquet(pq, [{"prompt": "p", "completion": "r"}, {"prompt": "p", "completion": " "}])
    assert _problems(pq) == [f"{pq}: record 2: empty response"]


def test_prompt_only_records_for_evaluation(tmp_path):
    path = tmp_path / "eval.jsonl"
    _jsonl(path, [{"prompt": "2+2?", "answer": "4"}, {"prompt": [{"role": "user", "content": "hi"}]}])
    assert [r for _, r in iter_records(str(path), require_response=False)] == [
        {"prompt": "2+2?", "answer": "4"}, {"messages": [{"role": "user", "content": "hi"}]}]
    assert all(isinstance(r, RecordError) for _, r in iter_records(str(path)))  # training needs a response


def test_output_paths_are_checked_before_work(tmp_path):
    f = tmp_path / "f.jsonl"
    f.write_text("")
    with pytest.raises(ValueError, match=f"--out {f}/x.jsonl: {f} is a file, not a folder; choose another path"):
        check_output_path(f / "x.jsonl")
    with pytest.raises(ValueError, match="is a folder"):
        write_jsonl([{"a": 1}], tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown file type; use a .jsonl, .json, .parquet, .csv or .tsv file"):
        iter_rows(str(tmp_path / "notes.txt"))


def test_key_map_as_flags_or_mapping_everywhere(tmp_path):
    path = tmp_path / "q.jsonl"
    _jsonl(path, [{"q": "a", "a": "b"}])
    tok = tiny_tokenizer()
    for km in (["prompt=q", "completion=a"], {"prompt": "q", "response": "a"}):
        assert [r for _, r in iter_records(str(path), key_map=km)] == [{"prompt": "a", "response": "b"}]
        ds, _ = tokenize_to_dataset(str(path), tok, key_map=km, template="plain")
        assert [i for i in ds[0]["labels"] if i != IGNORE_INDEX] == tok("b</s>", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="--map promt=q: unknown key 'promt' \\(did you mean 'prompt'\\?\\)"):
        iter_records(str(path), key_map=["promt=q"])


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
