"""Evidence v2 (docs/results/v2/) against its own data.

* summary.md regenerates byte for byte from the committed files (summarize.py's default mode), and
  ``--collect`` rebuilds those files from run folders laid out from them;
* run.sh trains exactly the objectives and seeds the tables show;
* the per-problem tables are what :func:`deft.analysis.intervals.paired_bootstrap` gives on the
  committed per-problem scores, with the Holm correction over each table;
* every number README.md quotes from the results carries a claim annotation (``tests/claims_helpers.py``)
  that matches the data at the precision written, and no decimal in its results goes unchecked.
"""

import json
import re
from pathlib import Path

import pytest
from claims_helpers import CLAIM, check_claims, load_script

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "docs" / "results" / "v2"


def _summarize():
    """docs/results/v2/summarize.py as a module (it is a script, not part of the package)."""
    return load_script("v2_summarize", HERE / "summarize.py")


@pytest.fixture(scope="module")
def summ():
    return _summarize()


@pytest.fixture(scope="module")
def sections(summ):
    return {name: summ.load(name) for name in summ.SECTIONS}


def test_summary_regenerates_byte_for_byte_from_the_committed_files(summ):
    assert summ.summary_text().encode("utf-8") == (HERE / "summary.md").read_bytes()


def _lay_out_runs(summ, root: Path) -> None:
    """Run folders as run.sh leaves them, built from the committed numbers."""
    screen = json.loads((HERE / "screen.json").read_text())
    folder = root / "screen"
    folder.mkdir(parents=True)
    results = {t: {"average_at_k": r["accuracy"], "n": r["n"], "truncated": r["truncated"]}
               for t, r in screen["tasks"].items()}
    config = {"n": screen["n"], "max_new_tokens": screen["max_new_tokens"]}
    (folder / "results.json").write_text(json.dumps({**results, "_config": config}))
    with open(folder / "generations.jsonl", "w") as f:
        for t, r in screen["tasks"].items():
            for i in range(r["n"]):
                f.write(json.dumps({"benchmark": t, "id": f"{t}-{i}", "sample": 0,
                                    "scores": {t: 1.0 if i < r["right"] else 0.0}}) + "\n")
    for name, run_folder in summ.SECTIONS.items():
        per_seed = json.loads((HERE / name / "per_seed.json").read_text())
        per_problem = json.loads((HERE / name / "per_problem.json").read_text())
        per_record = json.loads((HERE / name / "per_record.json").read_text())
        ev = root / run_folder / "eval"
        for method, runs in per_seed.items():
            if method == "Base" and name != summ.BASE_SECTION:
                continue
            for seed, res in ({"": runs} if method == "Base" else runs).items():
                folder = ev / "base" if method == "Base" else ev / method / f"seed{seed}"
                folder.mkdir(parents=True)
                results = {k: v for k, v in res.items() if k != "heldout"}
                (folder / "results.json").write_text(json.dumps({**results, "_config": {"model": "x"}}))
                sums = per_record[method] if method == "Base" else per_record[method][seed]
                (folder / "heldout.json").write_text(json.dumps({"metrics": {**res["heldout"], "per_record": sums}}))
                scores = per_problem[method] if method == "Base" else per_problem[method][seed]
                with open(folder / "generations.jsonl", "w") as f:
                    for bench, probs in scores.items():
                        for pid, score in probs.items():
                            f.write(json.dumps({"benchmark": bench, "id": pid, "sample": 0,
                                                "scores": {bench: score}}) + "\n")
        (ev / "deft" / "seed9").mkdir(parents=True)  # an evaluation that never finished: skipped


def test_collect_rebuilds_the_committed_files_from_run_folders(summ, tmp_path):
    _lay_out_runs(summ, tmp_path / "runs")
    summ.collect(tmp_path / "runs", tmp_path / "out")
    for name in summ.SECTIONS:
        for file in ("per_seed.json", "per_problem.json", "per_record.json"):
            assert (tmp_path / "out" / name / file).read_bytes() == (HERE / name / file).read_bytes(), (name, file)
    assert (tmp_path / "out" / "screen.json").read_bytes() == (HERE / "screen.json").read_bytes()
    with pytest.raises(SystemExit, match="no finished base evaluation"):
        summ.collect(tmp_path / "nowhere", tmp_path / "out")


def _run_sh_list(name: str) -> list[str]:
    match = re.search(rf"^{name}=(\S+)$", (HERE / "run.sh").read_text(), re.M)
    assert match, f"run.sh has no {name}= line"
    return match.group(1).split(",")


def test_run_sh_trains_exactly_what_the_tables_show(summ, sections):
    objectives, seeds = _run_sh_list("OBJECTIVES"), [int(s) for s in _run_sh_list("SEEDS")]
    assert tuple(objectives) == summ.METHODS
    benchmarks = _run_sh_list("BENCHMARKS")
    for sec in sections.values():
        assert sec.methods == objectives
        for m in objectives:
            assert sorted(sec.values[m]["content_nll"]) == seeds, (sec.name, m)
        assert sorted(sec.extra["vs_nll"]["rows"]["deft"]) == sorted(benchmarks)
    for name in summ.SECTIONS:  # each section's folder is run.sh's, at the learning rate it names
        assert f"lr{name[2:]}" in name and "intermediate-lr$lr" in (HERE / "run.sh").read_text()


def test_per_problem_tables_are_the_bootstrap_of_the_committed_scores(summ, sections):
    from deft.analysis.intervals import holm, paired_bootstrap

    for name, sec in sections.items():
        _, problems, _ = summ.read_section(name)
        table = sec.extra["vs_nll"]
        for bench in ("rg:word_sorting", "rg:number_format"):
            a = {pid: [problems["deft"][s][bench][pid] for s in problems["deft"]] for pid in problems["nll"][0][bench]}
            b = {pid: [problems["nll"][s][bench][pid] for s in problems["nll"]] for pid in a}
            d = paired_bootstrap(a, b, n_resamples=summ.N_RESAMPLES)
            assert d == table["rows"]["deft"][bench] and d.n == 128
        keys = list(table["p_holm"])
        assert [table["p_holm"][k] for k in keys] == holm([table["rows"][m][b].p for m, b in keys])
        assert set(sec.extra["vs_base"]["rows"]) == set(summ.METHODS)  # NLL too, against the base model


def test_the_record_bootstrap_is_centred_on_the_pooled_content_metrics(sections):
    """Each record's value is its content sum scaled by R / (content tokens): the bootstrap's mean
    difference is the difference of the pooled content metrics, averaged over the seeds."""
    for sec in sections.values():
        for m in ("p", "cayley", "deft"):
            for metric in ("content_nll", "content_mean_p"):
                d = sec.extra["records_vs_nll"]["rows"][m][metric]
                mine, ref = sec.values[m][metric], sec.values["nll"][metric]
                assert d.mean == pytest.approx(sum(mine[s] - ref[s] for s in mine) / len(mine), abs=1e-9)
                assert d.n == 256


README = HERE / "README.md"


def test_readme_numbers_match_the_data(sections):
    count, problems = check_claims(README.read_text(encoding="utf-8"), sections)
    assert not problems, "\n".join(problems)
    assert count >= 20


def test_readme_results_have_no_unchecked_decimal_number():
    text = README.read_text(encoding="utf-8")
    part = CLAIM.sub("", text[text.index("## Results"):])
    loose = [m.group(0) for m in re.finditer(r"(?<![\w.])\d+\.\d+(?![\d.]*[BM]\b)(?![\w.e-])", part)]
    assert not loose, f"{README}: numbers without a claim annotation: {loose}"


def test_a_drifted_per_problem_claim_fails(sections):
    sec = sections["lr2e-4"]
    d = sec.extra["vs_nll"]["rows"]["deft"]["rg:word_sorting"]
    good = f"{100 * d.mean:+.1f}<!--lr2e-4|deft-nll@problems|rg:word_sorting-->"
    assert check_claims(good, sections) == (1, [])
    assert check_claims(f"{100 * d.mean + 0.2:+.1f}<!--lr2e-4|deft-nll@problems|rg:word_sorting-->", sections)[1]
    assert check_claims("<!--lr2e-4|deft-nll@problems|rg:nothing-->", sections)[1]
