"""Tests of deft.eval.report: the printed results table of :func:`deft.eval.evaluate`."""

import pytest

from deft.eval import RawPrompt, evaluate, format_table

from eval_protocol_helpers import DATA, Scripted


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


def test_heldout_report_leads_with_content_tokens_and_shows_a_class_without_tokens_as_a_dash():
    from deft.eval.report import format_heldout

    metrics = {"heldout_nll": 2.5, "heldout_mean_p": 0.2978, "heldout_tokens": 108, "end_tokens": 32,
               "end_mean_p": 0.99, "end_nll": 0.01, "content_tokens": 76, "content_nll": 3.5,
               "content_mean_p": 0.0064, "learned": 0.3, "content_learned": 0.01, "content_forgotten": None}
    lines = format_heldout(metrics, title="t").splitlines()
    assert lines[0] == "t"
    assert [line.split()[0] for line in lines[1:5]] == ["content"] * 4
    assert lines[1].startswith("content NLL") and lines[1].endswith(" 3.5000")
    assert lines[2].endswith(" 0.0064") and lines[3].endswith(" 1.0%") and lines[4].endswith(" -")
    labels = [line[:58].strip() for line in lines[1:]]
    assert labels.index("end-of-turn / template mean target probability") < labels.index(
        "all tokens: held-out mean target probability")
    assert next(line for line in lines if line.startswith("all tokens: held-out mean")).endswith(" 0.2978")


def test_results_table_shows_the_truncated_share_beside_the_accuracy():
    res = {"figfont": {"n": 4, "k": 1, "average_at_k": 0.25, "stderr": 0.1, "exact": 0.25,
                       "jaro_winkler": 0.5, "truncated": 0.75}}
    header, _, row = format_table(res).splitlines()
    assert header.split()[-1] == "truncated" and row.split()[-1] == "75.0"
    assert "truncated" not in format_table({"figfont": {k: v for k, v in res["figfont"].items()
                                                        if k != "truncated"}})
