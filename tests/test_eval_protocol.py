"""The medical suite (both m1 file shapes, per-source rows and their mean) and ``--protocol paper``
(literal prompts, presets, the reference's metric names)."""

import json
from pathlib import Path

import pytest

from deft.cli.main import main
from deft.eval import RawPrompt, evaluate, format_table, load_problems, read_medical
from deft.eval.generate import Generation, render_prompts
from deft.eval.prompts import math_prompt_type, model_family, render_paper_prompt

DATA = Path(__file__).parent / "data" / "eval"


def text_of(prompt):
    return str(prompt) if isinstance(prompt, str) else prompt[-1]["content"]


class Scripted:
    """A fake backend: ``answer(problem_text, sample_index) -> text``; records every call."""

    name = "scripted"

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def __call__(self, prompts, *, k, **options):
        self.calls.append({"prompts": list(prompts), "k": k, **options})
        return [[Generation(self.answer(text_of(p), j), 3, True) for j in range(k)] for p in prompts]


# ---------------------------------------------------------------- medical


@pytest.mark.parametrize("shape", ["m1_dict.json", "m1_list.json"])
def test_medical_reader_both_shapes(shape):
    groups = read_medical(DATA / shape)
    assert list(groups) == ["MedQA", "PubMedQA"]
    assert [len(v) for v in groups.values()] == [2, 3]
    p = groups["PubMedQA"][1]
    assert p.benchmark == "medical/PubMedQA" and p.reference == "B" and p.scorers == ("mcq",)
    assert p.context == {"options": {"A": "yes", "B": "no", "C": "maybe"}}
    assert p.prompt.startswith("Is smoking protective") and p.prompt.endswith("within \\boxed{}.")
    assert [len(v) for v in read_medical(DATA / shape, limit=1).values()] == [1, 1]


def test_medical_reader_errors(tmp_path):
    bad = tmp_path / "m1.json"
    bad.write_text(json.dumps({"MedQA": [{"prompt": "q", "options": {"A": "x"}, "answer_idx": "B"}]}))
    with pytest.raises(ValueError, match=r"MedQA item 0: answer_idx 'B' is not one of the options"):
        read_medical(bad)
    bad.write_text(json.dumps([{"prompt": "q", "answer_idx": "A"}]))
    with pytest.raises(ValueError, match=r"missing field\(s\) \['options'\]"):
        read_medical(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="m1.json:1: not valid JSON"):
        read_medical(bad)


def _medical_answer(text, _):
    # MedQA: both right ("The answer is A/C"); PubMedQA: only the first right
    gold = {"crushing chest pain": "A", "scurvy": "C", "exercise": "A", "smoking": "A", "antibiotics": "C"}
    letter = next(v for k, v in gold.items() if k in text)
    return f"Thinking... so the answer is \\boxed{{{letter}}}"


@pytest.mark.parametrize("protocol", ["deft", "paper"])
@pytest.mark.parametrize("shape", ["m1_dict.json", "m1_list.json"])
def test_medical_rows_per_source_and_their_mean(tmp_path, protocol, shape):
    backend = Scripted(_medical_answer)
    res = evaluate("Qwen/Qwen2.5-7B", [f"medical:{DATA / shape}"], protocol=protocol, backend=backend,
                   out=tmp_path / "out", print_table=False, progress=False)
    assert res["medical/MedQA"]["average_at_k"] == 1.0 and res["medical/MedQA"]["n"] == 2
    assert res["medical/PubMedQA"]["average_at_k"] == pytest.approx(1 / 3)
    # the mean over sources (2/3), not over items (3/5), as the reference reports it
    assert res["medical"]["average_at_k"] == pytest.approx((1 + 1 / 3) / 2)
    assert res["medical"]["sources"] == ["medical/MedQA", "medical/PubMedQA"]
    assert res["average"]["average_at_k"] == pytest.approx(2 / 3)
    scorer = "mcq_paper" if protocol == "paper" else "mcq"
    assert res["medical/MedQA"]["scorer"] == scorer
    table = format_table(res).splitlines()
    assert [line.split()[0] for line in table[2:]] == ["medical/MedQA", "medical/PubMedQA", "medical"]
    assert "33.3" in table[3] and "66.7" in table[4]
    if protocol == "paper":
        assert res["medical/PubMedQA"]["acc"] == pytest.approx(1 / 3)
        first = backend.calls[0]
        assert isinstance(first["prompts"][0], RawPrompt) and first["prompts"][0].startswith("<|im_start|>system")
        assert first["max_new_tokens"] == 8000 and first["temperature"] == 0.0 and first["k"] == 1


def test_mcq_paper_always_picks_an_option_where_mcq_gives_none(tmp_path):
    # no letter at all: the paper matcher reads the option text "no", deft's mcq finds no answer
    backend = Scripted(lambda text, _: "I think no." if "smoking" in text else "unclear")
    res = {p: evaluate("qwen-2.5-7b", [f"medical:{DATA / 'm1_dict.json'}"], protocol=p, backend=backend,
                       limit=2, print_table=False, progress=False)["medical/PubMedQA"] for p in ("deft", "paper")}
    assert res["deft"]["average_at_k"] == 0.0
    assert res["paper"]["average_at_k"] == 0.5  # "no" read for item 1 (gold B); item 0 -> most similar


# ---------------------------------------------------------------- paper prompts


def test_paper_prompts_equal_the_reference_strings():
    ref = json.loads((DATA / "paper_prompts.json").read_text())
    q = "What is {x} + 1?"
    family = {"qwen-boxed": "qwen", "llama-base-boxed-with-bos": "llama", "deepseek-math": "deepseek"}
    for prompt_type, text in ref["math"].items():
        assert render_paper_prompt("math", q, family[prompt_type]) == text
    for regime in ("figfont", "medical"):
        for fam, text in ref[regime].items():
            assert render_paper_prompt(regime, q, fam) == text
    assert math_prompt_type("qwen-2.5-math-1.5b") == "qwen-boxed"
    assert math_prompt_type("meta-llama/Llama-3.1-8B") == "llama-base-boxed-with-bos"
    assert math_prompt_type("deepseek-math-7b") == "deepseek-math"
    with pytest.raises(ValueError, match="--prompt-family"):
        model_family("runs/deft/final")
    with pytest.raises(ValueError, match="no figfont prompt for deepseek"):
        render_paper_prompt("figfont", q, "deepseek")


def test_raw_prompts_are_tokenised_as_text(smollm2_tokenizer):
    text = render_paper_prompt("figfont", "HI", "qwen")
    ids = render_prompts(smollm2_tokenizer, [RawPrompt(text)])[0]
    assert ids == smollm2_tokenizer(text, add_special_tokens=True)["input_ids"]
    assert smollm2_tokenizer.convert_tokens_to_ids("<|im_start|>") == ids[0]  # a special token, not text


# ---------------------------------------------------------------- paper figfont and math


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
