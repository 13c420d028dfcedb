"""Tests of deft.eval.runner: the evaluation end to end: load a model once, generate ``k`` samples for
every problem of one or more benchmarks, score every sample, summarise, write and print."""

import json

import pytest

from deft.eval import evaluate, format_table, load_problems
from deft.eval.generate import Generation
from deft.eval.prompts import render_paper_prompt

from cli_eval_helpers import DATA, read_jsonl
from eval_protocol_helpers import Scripted


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


def test_mcq_paper_always_picks_an_option_where_mcq_gives_none(tmp_path):
    # no letter at all: the paper matcher reads the option text "no", deft's mcq finds no answer
    backend = Scripted(lambda text, _: "I think no." if "smoking" in text else "unclear")
    res = {p: evaluate("qwen-2.5-7b", [f"medical:{DATA / 'm1_dict.json'}"], protocol=p, backend=backend,
                       limit=2, print_table=False, progress=False)["medical/PubMedQA"] for p in ("deft", "paper")}
    assert res["deft"]["average_at_k"] == 0.0
    assert res["paper"]["average_at_k"] == 0.5  # "no" read for item 1 (gold B); item 0 -> most similar


def test_paper_figfont_items_presets_and_metric_names():
    import reasoning_gym

    probs = load_problems(["figfont"], model="Qwen/Qwen2.5-7B", protocol="paper", n=3)["figfont"]
    ds = reasoning_gym.create_dataset("figlet_font", size=1, seed=42, min_word_len=2, max_word_len=5,
                                      space_letters=True)
    assert [p.reference for p in probs] == [ds[40000 + i]["answer"] for i in range(3)]
    assert probs[0].raw_prompt == render_paper_prompt("figfont", ds[40000]["question"], "qwen")
    order = [p.raw_prompt for p in probs]

    def answer(text, _):
        # item 0: exact; item 1: lower case (normalized only); item 2: a leading space (neither)
        ref = probs[order.index(text)].reference
        return [ref, ref.lower(), " " + ref][order.index(text)]

    backend = Scripted(answer)
    res = evaluate("Qwen/Qwen2.5-7B", ["figfont"], protocol="paper", n=3, backend=backend, print_table=False,
                   progress=False)["figfont"]
    assert backend.calls[0]["max_new_tokens"] == 5 and backend.calls[0]["temperature"] == 0.0
    assert res["score"] == pytest.approx(1 / 3) and res["normalized_score"] == pytest.approx(2 / 3)
    assert res["jaro_winkler_similarity"] == pytest.approx(1.0)  # lower-cased and stripped
    assert res["scorer"] == "exact_paper" and res["average_at_k"] == res["score"]


def test_paper_math_acc_is_the_first_sample_and_mean_acc_average_at_k():
    probs = load_problems(["math500"], data_dir=DATA)["math500"]
    gold = {p.prompt.split("\n")[0]: p.reference for p in probs}

    def answer(text, j):
        question = next(q for q in gold if q in text)
        return f"The final answer is \\boxed{{{gold[question]}}}" if j == 0 else "The answer is \\boxed{-1}"

    backend = Scripted(answer)
    res = evaluate("qwen-2.5-math-1.5b", ["math500"], data_dir=DATA, protocol="paper", backend=backend,
                   print_table=False, progress=False)
    r = res["math500"]
    call = backend.calls[0]
    assert (call["k"], call["temperature"], call["top_p"], call["max_new_tokens"]) == (16, 1.0, 1.0, 4096)
    assert call["prompts"][0].startswith("<|im_start|>system\nYou are a helpful assistant.")
    assert r["acc"] == 1.0 and r["mean_acc"] == pytest.approx(1 / 16) == r["average_at_k"]
    assert r["all_acc"] == [1.0] + [0.0] * 15 and r["scorer"] == "math_paper"
    # the user's own decoding wins over the presets
    small = evaluate("qwen-2.5-math-1.5b", ["math500"], data_dir=DATA, protocol="paper", k=2, backend=backend,
                     print_table=False, progress=False)["math500"]
    assert small["k"] == 2 and small["mean_acc"] == pytest.approx(0.5)
