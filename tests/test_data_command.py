"""Tests of deft.data.command: what ``deft data`` does with a :class:`~deft.data.config.DataConfig`:
write a record file from a source, check a file, or measure token lengths. The CLI only parses and
calls :func:`run_data`."""

import json

from cli_data_helpers import read, run


def test_figfont_train_and_test_files(tmp_path, capsys):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    code, out, _ = run(capsys, "figfont", "--n", "12", "--seed", "1", "--out", str(train))
    assert code == 0 and "wrote 12 records" in out
    assert run(capsys, "figfont", "--n", "6", "--seed", "1", "--split", "test", "--out", str(test))[0] == 0
    tr, te = read(train), read(test)
    assert len(tr) == 12 and len(te) == 6 and all(r["task"] == "figfont" for r in tr + te)
    assert not {r["prompt"] for r in tr} & {r["prompt"] for r in te}
    again = tmp_path / "again.jsonl"
    run(capsys, "figfont", "--n", "12", "--seed", "1", "--out", str(again))
    assert again.read_bytes() == train.read_bytes()


def test_rg_task_args(tmp_path, capsys):
    out = tmp_path / "a.jsonl"
    code, _, err = run(capsys, "rg:basic_arithmetic", "--n", "3", "--task-args", "min_terms=2", "max_terms=2",
                       "--out", str(out))
    assert code == 0, err
    assert [r["metadata"]["num_terms"] for r in read(out)] == [2, 2, 2]


def test_math_and_medical_from_local_files(tmp_path, capsys):
    numina = tmp_path / "numina.jsonl"
    numina.write_text(json.dumps({"problem": "1+1?", "solution": r"It is $\boxed{2}$."}) + "\n")
    out = tmp_path / "math.jsonl"
    assert run(capsys, "math", str(numina), "--out", str(out))[0] == 0
    assert read(out)[0]["answer"] == "2"
    m23k = tmp_path / "m23k.jsonl"
    m23k.write_text(json.dumps({"question": "Q", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}) + "\n")
    assert run(capsys, "medical", str(m23k), "--out", str(out))[0] == 0
    assert read(out)[0]["answer"] == "A"


def test_paper_protocol_files(tmp_path, capsys):
    import reasoning_gym

    out = tmp_path / "fig_test.jsonl"
    code, stdout, err = run(capsys, "figfont", "--protocol", "paper", "--split", "test", "--n", "2",
                            "--out", str(out))
    assert code == 0 and "wrote 2 records" in stdout and "seed 42, paper protocol" in stdout, err
    ref = reasoning_gym.create_dataset("figlet_font", size=10, seed=42, min_word_len=2, max_word_len=5,
                                       space_letters=True)
    assert [r["answer"] for r in read(out)] == [ref[40_000]["answer"], ref[40_001]["answer"]]
    src = tmp_path / "m23k.jsonl"
    src.write_text(json.dumps({"prompt": "Q?\nA. a\nB. b", "answer_letter": "A",
                               "distilled_answer_string": "a. \\boxed{A}", "reasoning": "think"}) + "\n")
    med = tmp_path / "med.jsonl"
    code, _, err = run(capsys, "medical", str(src), "--protocol", "paper", "--model-key", "qwen-2.5-1.5b",
                       "--out", str(med))
    assert code == 0, err
    [rec] = read(med)
    assert rec["system"] == "You are a helpful assistant." and rec["response"] == "a. \\boxed{A}"
    assert rec["prompt"] == "Q?\nA. a\nB. b\nPlease reason step by step, and put your final answer within \\boxed{}."
    for argv, message in [
        (("figfont", "--protocol", "paper", "--seed", "3", "--out", "x.jsonl"), "the paper protocol uses seed 42"),
        (("medical", str(src), "--protocol", "paper", "--out", "x.jsonl"), "pass --model-key"),
        (("rg:basic_arithmetic", "--protocol", "paper", "--out", "x.jsonl"), "has no paper protocol"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_paper_template_family_from_model_key(smollm2_tokenizer, tmp_path, capsys):
    out = tmp_path / "fig.jsonl"
    assert run(capsys, "figfont", "--protocol", "paper", "--split", "test", "--n", "1", "--out", str(out))[0] == 0
    for key, family in (("qwen-2.5-7b", "qwen"), ("llama-3.2-3b", "llama")):
        code, stdout, err = run(capsys, "stats", str(out), "--model", "smollm2-135m", "--template", "paper",
                                "--model-key", key)
        assert code == 0 and f"template: paper:{family}" in stdout, err
    code, _, err = run(capsys, "stats", str(out), "--model", "smollm2-135m", "--template", "paper")
    assert code == 2 and "cannot tell the model family" in err and "paper:qwen" in err
