"""The paper's data protocol: the reference's FigFont items by index (real reasoning-gym), its math and
medical records per model family, and its literal prompt strings rendered by the ``paper`` template.

The expected strings below are the reference's own (luludus/DEFT: data/data_process_figfont.py,
data/data_process_medical.py, evaluations/math/utils.py prompt types llama-base-boxed-with-bos and
deepseek-math, and the Qwen2.5-Math chat template's default system prompt), written out literally."""

import json

import pytest
import reasoning_gym

from deft.data import (IGNORE_INDEX, RecordError, RecordTokenizer, figfont_paper_records, math_paper_records,
                       medical_paper_records, paper_family, resolve_template, source_records, tokenize_to_dataset,
                       write_jsonl)
from deft.data.paper import require_family

from data_paper_helpers import BOXED, REF_DEEPSEEK_MATH, REF_LLAMA_BASE_BOXED_WITH_BOS, REF_QWEN_MEDICAL
from data_readers_helpers import tiny_tokenizer

FIG_SYS = ("You are an expert at decoding Figlet Font ASCII art. When given Figlet Font text, identify the word it "
           "represents and output only that without any explanations or additional text.")


REF_QWEN_FIGFONT = ("<|im_start|>system\n" + FIG_SYS + "<|im_end|>\n<|im_start|>user\n{prompt}\n<|im_end|>\n"
                    "<|im_start|>assistant\n")


REF_LLAMA_FIGFONT = ("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + FIG_SYS
                     + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>"
                       "assistant<|end_header_id|>\n\n")


REF_LLAMA_MEDICAL = ("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                     "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
                     "<|eot_id|><|start_header_id|>user<|end_header_id|>"
                     "\n\n{prompt}\n" + BOXED + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


REF_DEEPSEEK_MEDICAL = "<｜begin▁of▁sentence｜>User: {prompt}\n" + BOXED + "\n\nAssistant:\n"


REF_QWEN_MATH = ("<|im_start|>system\n" + BOXED + "<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
                 "<|im_start|>assistant\n")


REF_LLAMA_MATH = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "You are a helpful assistant.<|eot_id|>\n"
                  "<|start_header_id|>user<|end_header_id|>\n\n{prompt}\n" + BOXED + "<|eot_id|>\n"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n")


def _ok(items):
    out = []
    for where, rec in items:
        assert not isinstance(rec, RecordError), rec
        out.append((where, rec))
    return out


def _reference_figfont():
    return reasoning_gym.create_dataset("figlet_font", size=10, seed=42, min_word_len=2, max_word_len=5,
                                        space_letters=True)


def _rows(tmp_path, rows, name):
    path = tmp_path / name
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


MATH_ROWS = [
    {"question": "What is 1+1?", "answer": "We add. $1+1=\\boxed{2}$.\n"},
    {"problem": "Simplify $\\frac{2}{4}$.", "solution": "Halve both: \\boxed{\\frac{1}{2}}"},
    {"extra_info": {"question": "Find x if 2x=6.", "answer": "x = \\boxed{3}", "index": 9}, "ability": "math"},
]


MEDICAL_ROWS = [
    {"prompt": "A 30-year-old... Which drug?\nA. aspirin\nB. heparin", "answer_letter": "B", "answer_string": "heparin",
     "reasoning": "long thinking", "distilled_answer_string": "Heparin is right.\n\\boxed{B}"},
    {"extra_info": {"question": "Q2?\nA. x\nB. y", "answer_letter": "A", "answer_string": "x",
                    "answer_raw": "It is x. \\boxed{A}", "answer_thinking": "hmm"}},
]


def test_figfont_items_are_the_reference_indices():
    ref = _reference_figfont()
    (w0, train0), (w1, train1) = _ok(figfont_paper_records("train", n=2))
    [(wt, test0)] = _ok(figfont_paper_records("test", n=1))
    for rec, idx in ((train0, 0), (train1, 1), (test0, 40_000)):
        item = ref[idx]
        assert rec["prompt"] == item["question"] and rec["response"] == item["answer"] == rec["answer"]
        assert rec["system"] == FIG_SYS and rec["task"] == "figfont"
        assert rec["metadata"]["reasoning_gym"] == {"task": "figlet_font", "seed": 42, "index": idx,
                                                   "args": {"min_word_len": 2, "max_word_len": 5,
                                                            "space_letters": True}}
        assert rec["metadata"]["protocol"] == "paper"
    assert (w0, wt) == ("figfont[paper,train]#0", "figfont[paper,test]#40000")
    last = _ok(figfont_paper_records("test", n=3, start=4_998))
    assert [w for w, _ in last] == ["figfont[paper,test]#44998", "figfont[paper,test]#44999"]  # the split ends there
    assert last[-1][1]["answer"] == ref[44_999]["answer"]


def test_figfont_test_questions_are_not_in_train():
    # Checked on the first 400 train items against the first 400 test items. The whole 40,000 x 5,000
    # check (run once outside the suite, ~4 minutes) finds 13 of the 5,000 test questions among the train
    # questions: the same word, font and wording drawn twice by chance; the reference does not
    # deduplicate and the protocol reproduces its split as it is, e.g. train item 4,885 = test item 41,655.
    train = {r["prompt"] for _, r in _ok(figfont_paper_records("train", n=400))}
    test = {r["prompt"] for _, r in _ok(figfont_paper_records("test", n=400))}
    assert len(test) == 400 and not train & test
    [(_, a)] = _ok(figfont_paper_records("train", n=1, start=4_885))
    [(_, b)] = _ok(figfont_paper_records("test", n=1, start=1_655))
    assert (a["prompt"] == b["prompt"] and a["id"] == "figfont-paper-train-4885"
            and b["id"] == "figfont-paper-test-41655")


@pytest.mark.parametrize("family, ref", [("qwen", REF_QWEN_FIGFONT), ("llama", REF_LLAMA_FIGFONT)])
def test_figfont_prompt_is_the_reference_string_and_labels_the_bare_word(family, ref):
    [(where, rec)] = _ok(figfont_paper_records("train", n=1))
    tok = tiny_tokenizer()
    view = RecordTokenizer(tok, template=f"paper:{family}")
    ex = view(rec, where)
    expected_prompt = tok(ref.replace("{prompt}", rec["prompt"]), add_special_tokens=False)["input_ids"]
    word = tok(rec["answer"], add_special_tokens=False)["input_ids"]
    assert ex.input_ids == expected_prompt + word + [tok.eos_token_id]  # no BOS added: the string has its own
    assert ex.labels == [IGNORE_INDEX] * len(expected_prompt) + word + [tok.eos_token_id]
    # the same ids for generation, from the messages alone (no task given)
    assert view.prompt_ids([{"role": "system", "content": rec["system"]},
                            {"role": "user", "content": rec["prompt"]}]) == expected_prompt


@pytest.mark.parametrize("family, ref", [("qwen", REF_QWEN_MATH), ("llama", REF_LLAMA_MATH),
                                         ("deepseek", REF_DEEPSEEK_MATH)])
def test_math_records_per_family(tmp_path, family, ref):
    path = _rows(tmp_path, MATH_ROWS, "math.jsonl")
    recs = [r for _, r in _ok(math_paper_records(str(path), family))]
    questions = ["What is 1+1?", "Simplify $\\frac{2}{4}$.", "Find x if 2x=6."]
    assert [r["answer"] for r in recs] == ["2", "\\frac{1}{2}", "3"]
    assert [r["response"] for r in recs] == ["We add. $1+1=\\boxed{2}$.\n", "Halve both: \\boxed{\\frac{1}{2}}",
                                             "x = \\boxed{3}"]
    assert [r["id"] for r in recs] == [0, 1, 2] and all(r["task"] == "math" for r in recs)
    tok = tiny_tokenizer()
    view = RecordTokenizer(tok, template=f"paper:{family}")
    for rec, q in zip(recs, questions):
        ids = view(rec).input_ids
        prompt = tok(ref.replace("{prompt}", q), add_special_tokens=False)["input_ids"]
        assert ids[: len(prompt)] == prompt, family
    assert len(_ok(math_paper_records(str(path), family, n=2))) == 2  # the first n rows, in file order
    pq = _rows(tmp_path, MATH_ROWS[:1] * 2, "math.parquet")  # the reference's numina subset is a parquet file
    assert [r for _, r in _ok(math_paper_records(str(pq), family))] == [recs[0], {**recs[0], "id": 1, "metadata": {
        **recs[0]["metadata"], "index": 1}}]


@pytest.mark.parametrize("family, ref", [("qwen", REF_QWEN_MEDICAL), ("llama", REF_LLAMA_MEDICAL),
                                         ("deepseek", REF_DEEPSEEK_MEDICAL)])
def test_medical_records_per_family(tmp_path, family, ref):
    path = _rows(tmp_path, MEDICAL_ROWS, "m23k.jsonl")
    recs = [r for _, r in _ok(medical_paper_records(str(path), family))]
    assert [r["response"] for r in recs] == ["Heparin is right.\n\\boxed{B}", "It is x. \\boxed{A}"]  # no thinking
    assert [r["answer"] for r in recs] == ["B", "A"]
    assert recs[0]["metadata"]["answer_text"] == "heparin"
    tok = tiny_tokenizer()
    view = RecordTokenizer(tok, template=f"paper:{family}")
    for rec, q in zip(recs, ["A 30-year-old... Which drug?\nA. aspirin\nB. heparin", "Q2?\nA. x\nB. y"]):
        ex = view(rec)
        prompt = tok(ref.replace("{prompt}", q), add_special_tokens=False)["input_ids"]
        assert ex.input_ids[: len(prompt)] == prompt and ex.num_prompt_tokens == len(prompt)
        assert tok.decode(ex.response_ids) == rec["response"] + tok.eos_token


def test_tokenize_to_dataset_with_the_paper_template(tmp_path):
    path = tmp_path / "fig.jsonl"
    write_jsonl([r for _, r in _ok(figfont_paper_records("test", n=3))], path)
    tok = tiny_tokenizer()
    ds, report = tokenize_to_dataset(str(path), tok, template="paper:qwen")
    assert report.valid == 3
    for row, (_, rec) in zip(ds, _ok(figfont_paper_records("test", n=3))):
        labelled = [i for i in row["labels"] if i != IGNORE_INDEX]
        assert labelled == tok(rec["answer"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_bad_medical_and_math_rows_are_located(tmp_path):
    path = _rows(tmp_path, [{"prompt": "q", "answer_letter": "B"}, {"prompt": "q", "answer_letter": "BC",
                                                                   "distilled_answer_string": "r"}], "bad.jsonl")
    errs = [rec for _, rec in medical_paper_records(str(path), "qwen")]
    assert f"{path}:1: missing 'distilled_answer_string'" in str(errs[0])
    assert f"{path}:2: 'answer_letter' must be one option letter" in str(errs[1])
    path = _rows(tmp_path, [{"question": "q", "answer": "no box"}], "m.jsonl")
    [(_, err)] = list(math_paper_records(str(path), "llama"))
    assert isinstance(err, RecordError) and str(err).startswith(f"{path}:1: the solution has no complete \\boxed")


def test_family_from_model_key_or_name_and_template_resolution():
    assert paper_family("qwen-2.5-math-1.5b") == "qwen" and paper_family("llama-3.2-3b") == "llama"
    assert paper_family("deepseek-ai/deepseek-math-7b-base") == "deepseek" and paper_family("/ckpt/x") is None
    assert require_family("medical", model_key="llama-3.1-8b") == "llama"
    with pytest.raises(ValueError, match="unknown; use one of qwen-2.5-math-1.5b"):
        require_family("math", model_key="qwen-9")
    with pytest.raises(ValueError, match="no figfont prompt for deepseek"):
        require_family("figfont", model_key="deepseek-math-7b")
    with pytest.raises(ValueError, match="pass --model-key"):
        require_family("math", model="/ckpt/x")
    tok = tiny_tokenizer()
    tok.name_or_path = "meta-llama/Llama-3.2-3B"
    assert resolve_template("paper", tok) == "paper:llama"
    tok.name_or_path = "/tmp/ckpt"
    with pytest.raises(ValueError, match="use --template paper:qwen"):
        resolve_template("paper", tok)


def test_source_records_paper_dispatch_and_refusals(tmp_path):
    path = _rows(tmp_path, MATH_ROWS, "math.jsonl")
    [(_, rec)] = _ok(source_records("math", input=str(path), n=1, protocol="paper", model_key="deepseek-math-7b"))
    assert "system" not in rec and rec["prompt"] == "What is 1+1?\n" + BOXED
    with pytest.raises(ValueError, match="has no paper protocol"):
        source_records("rg:basic_arithmetic", n=3, protocol="paper")
    with pytest.raises(ValueError, match="train and test"):
        list(source_records("figfont", split="validation", protocol="paper"))
    rec = {"prompt": "hi", "response": "yo", "system": "s"}
    with pytest.raises(RecordError, match="has no system turn"):
        RecordTokenizer(tiny_tokenizer(), template="paper:deepseek")(rec, "f.jsonl:3")


def test_paper_sft_reproduces_the_reference_training_wrapper_for_llama(tmp_path):
    # the reference's SFT dataset wraps a Llama base model's prompt (here FigFont's whole Llama prompt) in the
    # llama-base-boxed-with-bos string; Qwen prompts are used as they are, and Llama math's string is the wrapper
    [(where, rec)] = _ok(figfont_paper_records("train", n=1))
    tok = tiny_tokenizer()
    msgs = [{"role": "system", "content": rec["system"]}, {"role": "user", "content": rec["prompt"]}]
    nested = REF_LLAMA_BASE_BOXED_WITH_BOS.replace("{input}", REF_LLAMA_FIGFONT.replace("{prompt}", rec["prompt"]))
    assert (RecordTokenizer(tok, template="paper-sft:llama").prompt_ids(msgs)
            == tok(nested, add_special_tokens=False)["input_ids"])
    for family in ("qwen", "deepseek"):
        a, b = RecordTokenizer(tok, template=f"paper-sft:{family}"), RecordTokenizer(tok, template=f"paper:{family}")
        path = _rows(tmp_path, MATH_ROWS, "m.jsonl")
        for _, r in _ok(math_paper_records(str(path), family)):
            assert a(r).input_ids == b(r).input_ids
    path = _rows(tmp_path, MATH_ROWS[:1], "m1.jsonl")
    [(_, r)] = _ok(math_paper_records(str(path), "llama"))
    assert (RecordTokenizer(tok, template="paper-sft:llama")(r).input_ids
            == RecordTokenizer(tok, template="paper:llama")(r).input_ids)
    tok.name_or_path = "meta-llama/Llama-3.1-8B"
    assert resolve_template("paper-sft", tok) == "paper-sft:llama"
