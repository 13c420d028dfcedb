"""One record reader for every format people have: TRL prompt/completion (plain and conversational),
messages, Alpaca, ShareGPT; JSONL, JSON arrays, Parquet, CSV and save_to_disk directories; ``key_map``;
the same located one-line errors everywhere (``FILE:LINE`` or ``FILE: record N``), non-UTF-8 and BOMs."""

import string

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>", "<｜begin▁of▁sentence｜>"]


def tiny_tokenizer():
    """A character-level tokenizer built here (no download): every printable ASCII character is one
    token, the paper's special tokens are single special tokens, ``</s>`` is EOS."""
    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate(sorted(set(string.printable)))}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>", bos_token="<s>",
                                  pad_token="<pad>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    return tok


import json

import pytest

from deft.data import DataError, IGNORE_INDEX, RecordError, iter_records, tokenize_to_dataset, validate_source, write_jsonl
from deft.data.readers import check_output_path, iter_rows

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PAIRS = [("What is 2+2?", "4"), ("Name a colour.", "Blue")]
AS_PROMPT = [{"prompt": p, "response": r} for p, r in PAIRS]
AS_MESSAGES = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]} for p, r in PAIRS]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


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
                                 "completion": [{"role": "assistant", "content": r}]} for p, r in PAIRS], None, AS_MESSAGES),
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


def _problems(path, **kw):
    with pytest.raises(DataError) as info:
        validate_source(str(path), **kw)
    assert "\n" not in str(info.value)
    return info.value.problems


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


def test_json_array_csv_and_parquet_errors_name_the_record(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"prompt": "p", "response": "r"}, {"prompt": "p"}]).encode())
    assert _problems(arr) == [f"{arr}: record 2: missing key 'response' (need 'messages', 'prompt' + 'response' or "
                              f"'prompt' + 'completion'; columns are: prompt; map other names with --map KEY=COLUMN)"]
    enc = tmp_path / "enc.json"
    enc.write_bytes(b'[{"prompt": "p", "response": "r"},\n {"prompt": "\xff", "response": "r"}]')
    with pytest.raises(ValueError, match=r"enc.json:2: not UTF-8 \(byte 0xff at column 14\); re-save the file as UTF-8$"):
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


def test_read_records_is_what_probe_and_eval_read_with(tmp_path):
    from deft.data import read_records

    path = tmp_path / "r.csv"
    path.write_text("prompt,completion\na,b\nc,\n")
    with pytest.raises(DataError, match=r"1 invalid record in .*r.csv \(first: .*r.csv: record 2: missing key 'response'"):
        read_records(str(path))
    records, report = read_records(str(path), skip_invalid=True)
    assert records == [(f"{path}: record 1", {"prompt": "a", "response": "b"})] and report.invalid == 1
    assert read_records(str(path), require_response=False)[0][1] == (f"{path}: record 2", {"prompt": "c"})


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
