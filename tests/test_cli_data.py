"""``deft data``: one command per source, located errors, non-zero exits without tracebacks."""

import argparse
import json

from deft.cli.main import SUBCOMMANDS, main


def run(capsys, *argv):
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_flag_has_help():
    from deft.cli import data

    sub = argparse.ArgumentParser().add_subparsers()
    data.add_parser(sub)
    for action in sub.choices["data"]._actions:
        assert action.help, action.dest
    assert "data" in SUBCOMMANDS


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


def test_invalid_file_lists_problems_and_exits_2(tmp_path, capsys):
    src = tmp_path / "mine.jsonl"
    src.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\nnot json\n{"prompt": "c", "response": ""}\n')
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, str(src), "--out", str(out))
    lines = err.strip().splitlines()
    assert code == 2 and not out.exists()
    assert lines[0].startswith(f"{src}:2: missing key 'response'")
    assert lines[1].startswith(f"{src}:3: malformed JSON")
    assert lines[2] == f"{src}:4: empty response"
    assert lines[3].startswith("deft data: error: 3 invalid records") and "Traceback" not in err
    code, text, err = run(capsys, str(src), "--out", str(out), "--skip-invalid")
    assert code == 0 and "skipped 3 invalid records" in err and len(read(out)) == 1
    assert run(capsys, "check", str(src))[0] == 2


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


def test_user_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "f.jsonl").write_text("")
    for argv, message in [
        (("nosuch", "--out", "x.jsonl"), "unknown source 'nosuch'"),
        (("figfont",), "needs --out"),
        (("stats", "x.jsonl"), "stats needs --model"),
        (("math", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.jsonl")), "no such file"),
        (("mix", "--part", "figfont=0", "--n", "3", "--out", "x.jsonl"), "proportion must be positive"),
        (("stats", "x.jsonl", "--model", "smollm2-135m", "--max-length", "-5"), "'max_length' must be at least 2 tokens, got -5"),
        (("figfont", "--out", str(tmp_path / "f.jsonl" / "x.jsonl")), "is a file, not a folder"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)


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


def test_hub_dataset_without_network_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, "math", "AI-MO/NuminaMath-CoT", "--out", str(tmp_path / "m.jsonl"))
    assert code == 2 and "hub is unreachable" in err and len(err.strip().splitlines()) == 1


def test_paper_protocol_files(tmp_path, capsys):
    import reasoning_gym

    out = tmp_path / "fig_test.jsonl"
    code, stdout, err = run(capsys, "figfont", "--protocol", "paper", "--split", "test", "--n", "2", "--out", str(out))
    assert code == 0 and "wrote 2 records" in stdout and "seed 42, paper protocol" in stdout, err
    ref = reasoning_gym.create_dataset("figlet_font", size=10, seed=42, min_word_len=2, max_word_len=5, space_letters=True)
    assert [r["answer"] for r in read(out)] == [ref[40_000]["answer"], ref[40_001]["answer"]]
    src = tmp_path / "m23k.jsonl"
    src.write_text(json.dumps({"prompt": "Q?\nA. a\nB. b", "answer_letter": "A", "distilled_answer_string": "a. \\boxed{A}",
                               "reasoning": "think"}) + "\n")
    med = tmp_path / "med.jsonl"
    code, _, err = run(capsys, "medical", str(src), "--protocol", "paper", "--model-key", "qwen-2.5-1.5b", "--out", str(med))
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


def test_help_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom deft.cli.main import main\ntry:\n    main(['data', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_config_file_map_and_aliases(tmp_path, capsys):
    src = tmp_path / "rows.csv"
    src.write_text("question,answer,extra\nq1,a1,x\nq2,a2,y\nq3,a3,z\n")
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"map: [prompt=question, response=answer]\nkeep_extra: true\nout: {tmp_path / 'o.jsonl'}\n")
    code, out, err = run(capsys, "jsonl", str(src), "--config", str(cfg), "--size", "2", "--seed", "5")
    assert code == 0, err
    recs = read(tmp_path / "o.jsonl")
    assert len(recs) == 2 and all(r["prompt"] in ("q1", "q2", "q3") and r["metadata"]["extra"] for r in recs)
    assert {r["prompt"][1] for r in recs} == {r["response"][1] for r in recs}
    cfg.write_text("mapp: [prompt=question]\n")
    code, _, err = run(capsys, "jsonl", str(src), "--config", str(cfg), "--out", str(tmp_path / "p.jsonl"))
    assert code == 2 and "unknown option 'mapp' (did you mean 'map'?)" in err


def test_paper_template_family_from_model_key(smollm2_tokenizer, tmp_path, capsys):
    out = tmp_path / "fig.jsonl"
    assert run(capsys, "figfont", "--protocol", "paper", "--split", "test", "--n", "1", "--out", str(out))[0] == 0
    for key, family in (("qwen-2.5-7b", "qwen"), ("llama-3.2-3b", "llama")):
        code, stdout, err = run(capsys, "stats", str(out), "--model", "smollm2-135m", "--template", "paper",
                                "--model-key", key)
        assert code == 0 and f"template: paper:{family}" in stdout, err
    code, _, err = run(capsys, "stats", str(out), "--model", "smollm2-135m", "--template", "paper")
    assert code == 2 and "cannot tell the model family" in err and "paper:qwen" in err
