"""Tests of deft.data.sources_math: math rows (``math``): NuminaMath-CoT-style ``problem`` /
``solution`` ending in ``\boxed{...}``; the prompt gets :data:`MATH_PROMPT_SUFFIX`, the response is
the worked solution, ``answer`` the content of the last ``\boxed{}``
(:func:`deft.text.extract_boxed`, the one parser of gold answers and predictions). Also the
helpers the file-based sources share: :func:`sample` (a seeded sample), :func:`pick` (a mapped or
aliased column) and :func:`rows_to_records`."""

from deft.data import MATH_PROMPT_SUFFIX, RecordError, math_records

from data_sources_helpers import _write_jsonl


def test_math_rows(tmp_path):
    src = _write_jsonl(tmp_path / "numina.jsonl", [
        {"problem": "Find $x$.", "solution": r"Hence $x = \boxed{\frac{\sqrt{3}}{2}}$.", "source": "olympiads"},
        {"problem": "Add.", "solution": r"$1+1=\boxed{2}$"},
        {"problem": "Prove.", "solution": "Done."},
        {"question": "Q", "output": r"\boxed{5}"},
    ])
    items = list(math_records(src))
    rec = items[0][1]
    assert rec["prompt"] == f"Find $x$.\n{MATH_PROMPT_SUFFIX}"
    assert rec["response"] == r"Hence $x = \boxed{\frac{\sqrt{3}}{2}}$."
    assert rec["answer"] == r"\frac{\sqrt{3}}{2}" and rec["task"] == "math"
    assert isinstance(items[2][1], RecordError) and items[2][0].endswith("numina.jsonl:3")
    assert "no \\boxed" in str(items[2][1])
    assert "missing 'problem'" in str(items[3][1])
    only = [r for _, r in math_records(src, key_map=["problem=question", "solution=output"])]
    assert only[3]["answer"] == "5" and all(isinstance(r, RecordError) for r in only[:3])
    sample = [r["answer"] for _, r in math_records(src, n=1, seed=0) if not isinstance(r, RecordError)]
    assert len(sample) == 1
