"""Tests of deft.data.stats: token-length statistics of a record file with a model's tokenizer (``deft
data stats``)."""

import json

from cli_data_helpers import run


def test_stats_and_truncation_check_with_the_embedded_tokenizer(smollm2_tokenizer, tmp_path, capsys):
    src = tmp_path / "d.jsonl"
    rows = [{"prompt": "Hi " * n, "response": "Hello there."} for n in (5, 50, 200)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run(capsys, "stats", str(src), "--model", "smollm2-135m", "--max-length", "100")
    assert code == 0
    assert "3 records read, 3 valid" in out and "template: chat" in out
    assert "longer than 100 tokens: 1 of 3" in out
    assert out.splitlines()[1].split()[:2] == ["tokens", "min"]
    code, _, err = run(capsys, str(src), "--out", str(tmp_path / "o.jsonl"), "--model", "smollm2-135m",
                       "--max-length", "100", "--truncation", "right")
    assert code == 2 and f"{src}:3: all prompt after truncation" in err
