"""``deft data``: one command per source, located errors, non-zero exits without tracebacks."""

import argparse

from deft.cli.main import SUBCOMMANDS

from cli_data_helpers import read, run


def test_every_flag_has_help():
    from deft.cli import data

    sub = argparse.ArgumentParser().add_subparsers()
    data.add_parser(sub)
    for action in sub.choices["data"]._actions:
        assert action.help, action.dest
    assert "data" in SUBCOMMANDS


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


def test_user_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "f.jsonl").write_text("")
    for argv, message in [
        (("nosuch", "--out", "x.jsonl"), "unknown source 'nosuch'"),
        (("figfont",), "needs --out"),
        (("stats", "x.jsonl"), "stats needs --model"),
        (("math", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.jsonl")), "no such file"),
        (("mix", "--part", "figfont=0", "--n", "3", "--out", "x.jsonl"), "proportion must be positive"),
        (("stats", "x.jsonl", "--model", "smollm2-135m", "--max-length", "-5"),
         "'max_length' must be at least 2 tokens, got -5"),
        (("figfont", "--out", str(tmp_path / "f.jsonl" / "x.jsonl")), "is a file, not a folder"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_hub_dataset_without_network_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, "math", "AI-MO/NuminaMath-CoT", "--out", str(tmp_path / "m.jsonl"))
    assert code == 2 and "hub is unreachable" in err and len(err.strip().splitlines()) == 1


def test_help_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom deft.cli.main import main\n"
            "try:\n    main(['data', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
