"""Benchmark readers: Qwen2.5-Math layout files, figfont, reasoning-gym tasks, record files."""

import json
from pathlib import Path

import pytest

from deft.eval import MATH_PROMPT_SUFFIX, load_benchmark, read_math_benchmark, read_records, score

DATA = Path(__file__).parent / "data" / "eval"

EXPECTED = {
    "math500": ["\\left( 3, \\frac{\\pi}{2} \\right)", "\\frac{14}{3}", "\\text{Evelyn}"],
    "aime24": ["204", "25"],
    "amc23": ["27", "36"],
    "minerva_math": ["1.6", "7.25e-11"],
    "olympiadbench": ["-6,-8,-10", "100"],
    "gsm8k": ["18", "70000"],
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_math_readers(name):
    problems = read_math_benchmark(name, DATA)
    assert [p.reference for p in problems] == EXPECTED[name]
    for p in problems:
        assert p.benchmark == name and p.scorers == ("math",) and p.scorer == "math"
        assert p.prompt.endswith("\n" + MATH_PROMPT_SUFFIX)
        assert p.chat() == [{"role": "user", "content": p.prompt}]
        assert p.score(f"... so the answer is $\\boxed{{{p.reference}}}$.") == {"math": 1.0}
    bare = read_math_benchmark(name, DATA, limit=1, prompt_suffix="")
    assert len(bare) == 1 and bare[0].prompt == problems[0].prompt.split("\n" + MATH_PROMPT_SUFFIX)[0]


def test_reference_solutions_score_as_correct():
    # the benchmark's own worked solutions, scored against the extracted gold
    for name, field in (("math500", "solution"), ("minerva_math", "solution"), ("gsm8k", "answer")):
        rows = [json.loads(line) for line in (DATA / name / "test.jsonl").read_text().splitlines()]
        golds = [p.reference for p in read_math_benchmark(name, DATA)]
        for row, gold in zip(rows, golds):
            text = row[field].replace("####", "The answer is")
            assert score("math", text, gold) == 1.0, (name, gold)


def test_math_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        read_math_benchmark("math500", tmp_path)
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "no"}) + "\n")
    with pytest.raises(ValueError, match="####"):
        read_math_benchmark("gsm8k", tmp_path)
    (tmp_path / "math500").mkdir()
    (tmp_path / "math500" / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(ValueError, match="problem"):
        read_math_benchmark("math500", tmp_path)
    with pytest.raises(ValueError, match="data_dir"):
        load_benchmark("math500")


def test_figfont_from_reasoning_gym():
    problems = load_benchmark("figfont", size=6, seed=123)
    again = load_benchmark("figfont", size=6, seed=123)
    assert [p.reference for p in problems] == [p.reference for p in again]  # seed-controlled
    for p in problems:
        assert p.scorers == ("exact", "jaro_winkler")
        assert 2 <= len(p.reference) <= 5 and p.reference.isalpha()
        assert p.entry["metadata"]["space_letters"] is True
        assert p.score(f" {p.reference.lower()}\n") == {"exact": 1.0, "jaro_winkler": 1.0}
        wrong = p.score("QQQQQQQQ")
        assert wrong["exact"] == 0.0 and wrong["jaro_winkler"] < 1.0


def test_rg_task_benchmark():
    problems = load_benchmark("rg:basic_arithmetic", size=3, seed=7)
    assert len(problems) == 3
    for p in problems:
        assert p.scorers == ("rg:basic_arithmetic",) and p.entry is not None
        assert p.score(f"<answer>{p.reference}</answer>") == {"rg:basic_arithmetic": 1.0}
    with pytest.raises(ValueError, match="reasoning-gym task"):
        load_benchmark("rg:no_such_task", size=1)


def test_record_files(tmp_path):
    path = tmp_path / "medqa.jsonl"
    rows = [
        {"id": "q1", "prompt": "Which drug ...?\nA. x\nB. y\nC. z", "answer": "C"},
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Pick one: A or B"},
                      {"role": "assistant", "content": "The answer is B."}], "answer": "B"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    problems = load_benchmark(str(path), scorer="mcq")
    assert [p.id for p in problems] == ["q1", "2"]
    assert problems[0].chat() == [{"role": "user", "content": rows[0]["prompt"]}]
    assert problems[1].prompt == "Pick one: A or B"
    assert [m["role"] for m in problems[1].chat()] == ["system", "user"]  # the target turn is dropped
    assert problems[1].score("**B**") == {"mcq": 1.0}
    with pytest.raises(ValueError, match="scorer"):
        load_benchmark(str(path))
    with pytest.raises(ValueError, match="unknown scorer"):
        read_records(path, "bleu")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match="answer"):
        read_records(bad, "exact")


def test_record_formats_through_the_data_layer_reader(tmp_path):
    # TRL prompt/completion (plain and conversational), CSV with --map, Alpaca: one reader for all
    trl = tmp_path / "trl.jsonl"
    trl.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "2+2?", "completion": "4"},
        {"prompt": [{"role": "user", "content": "3+3?"}], "completion": [{"role": "assistant", "content": "6"}]},
    ]) + "\n")
    probs = read_records(trl, "exact")
    assert [(p.prompt, p.reference) for p in probs] == [("2+2?", "4"), ("3+3?", "6")]
    assert probs[1].chat() == [{"role": "user", "content": "3+3?"}] and probs[0].score(" 4 ") == {"exact": 1.0}
    csv = tmp_path / "qa.csv"
    csv.write_text("question,solution\nCapital of France?,Paris\n")
    (p,) = read_records(csv, "exact", key_map=["prompt=question", "answer=solution"])
    assert (p.prompt, p.reference, p.id) == ("Capital of France?", "Paris", "1")
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "Say hi", "input": "", "output": "hi", "system": "Be kind."}]))
    (p,) = read_records(alpaca, "exact")
    assert p.reference == "hi" and p.chat()[0] == {"role": "system", "content": "Be kind."}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "answer": "1"}\n{"prompt": 5\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_records(bad, "exact")


def test_unknown_benchmark():
    with pytest.raises(ValueError, match="math500"):
        load_benchmark("mmlu")


def _echo_reader(key, *, limit=None, **_):
    """A benchmark declared by the test: three problems whose answer is their own prompt."""
    from deft.eval import Problem

    return [Problem(benchmark="echo", id=str(i), prompt=f"w{i}", reference=f"w{i}", scorers=("exact",))
            for i in range(3)]


def test_one_declaration_registers_a_benchmark_everywhere(capsys):
    from deft.cli.main import main
    from deft.config import ConfigError
    from deft.eval import (benchmark_names, evaluate, list_benchmarks, load_benchmark, register_benchmark,
                           unregister_benchmark)
    from deft.eval.config import EvalConfig, regime_of

    from eval_protocol_helpers import Scripted

    register_benchmark("echo", _echo_reader, "three words to repeat; scorer: exact", scorer="exact")
    try:
        with pytest.raises(SystemExit):
            main(["eval", "--help"])
        assert "echo three words to repeat; scorer: exact" in " ".join(capsys.readouterr().out.split())
        assert "echo" in benchmark_names() and list_benchmarks()["echo"] == "three words to repeat; scorer: exact"
        with pytest.raises(ConfigError, match="echo"):  # the choices named when none is given
            EvalConfig().validate()
        assert [p.id for p in load_benchmark("echo", limit=2)] == ["0", "1"] and regime_of("echo") == "other"
        res = evaluate("smollm2-135m", ["echo"], backend=Scripted(lambda text, _: text), print_table=False,
                       progress=False)
        assert res["echo"]["average_at_k"] == 1.0 and res["echo"]["scorer"] == "exact"
        with pytest.raises(ValueError, match="already registered"):
            register_benchmark("echo", _echo_reader, "again")
    finally:
        unregister_benchmark("echo")
    with pytest.raises(ValueError, match="unknown benchmark 'echo'"):
        load_benchmark("echo")


def test_builtin_benchmarks_are_declared_once():
    from deft.eval import BENCHMARKS, MATH_BENCHMARKS, benchmark_names
    from deft.eval.config import regime_of

    assert benchmark_names() == [*MATH_BENCHMARKS, "figfont", "rg:<task>", "medical:<file>"]
    assert list(BENCHMARKS) == [*benchmark_names(), "<file>.jsonl"]
    assert [regime_of(b) for b in ("math500", "figfont", "rg:countdown", "medical:x.json", "medical/MedQA",
                                   "data/x.jsonl")] == ["math", "figfont", "other", "medical", "medical", "other"]
