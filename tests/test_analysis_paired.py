"""Tests of deft.analysis.paired: per-problem paired differences between methods evaluated on the
same problems, read from the evaluations' generations.jsonl."""

import json

import pytest

from deft.analysis.intervals import holm, paired_bootstrap
from deft.analysis.paired import format_paired, paired_differences, problem_scores


def _eval_folder(path, bench, scores, scorer="exact", k=1):
    """An evaluation folder as deft eval writes it: ``scores[i][j]`` is problem i's sample j."""
    path.mkdir(parents=True)
    lines = [{"benchmark": bench, "id": f"q{i}", "sample": j, "text": "x", "scores": {scorer: s, "other": 1 - s}}
             for i, row in enumerate(scores) for j, s in enumerate(row)]
    (path / "generations.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (path / "results.json").write_text(json.dumps({bench: {"scorer": scorer, "k": k}, "average": {}}))
    return path


def test_problem_scores_average_the_samples_of_the_primary_scorer(tmp_path):
    folder = _eval_folder(tmp_path / "e", "rg:x", [[1, 0, 1, 1], [0, 0, 0, 0]], k=4)
    assert problem_scores(folder) == {"rg:x": {"q0": 0.75, "q1": 0.0}}
    (folder / "generations.jsonl").write_text((folder / "generations.jsonl").read_text() + "{torn\n")
    with pytest.raises(ValueError, match=r"generations.jsonl:9: not a scored sample"):
        problem_scores(folder)
    with pytest.raises(FileNotFoundError, match="no per-sample scores"):
        problem_scores(tmp_path / "missing")


def test_paired_differences_average_seeds_then_bootstrap_and_holm(tmp_path):
    ref = {0: _eval_folder(tmp_path / "nll0", "b", [[0], [0], [1], [0]]),
           1: _eval_folder(tmp_path / "nll1", "b", [[0], [1], [1], [0]])}
    new = {0: _eval_folder(tmp_path / "d0", "b", [[1], [1], [1], [0]]),
           1: _eval_folder(tmp_path / "d1", "b", [[1], [1], [1], [1]])}
    same = {0: ref[0], 1: ref[1]}
    base = {None: _eval_folder(tmp_path / "base", "b", [[0], [0], [0], [0]])}
    paired = paired_differences({"Base": base, "nll": ref, "deft": new, "same": same}, "nll", n_resamples=500)
    assert set(paired["rows"]) == {"deft", "same"}  # the base model is not compared
    d = paired["rows"]["deft"]["b"]
    # per-problem means over seeds: deft (1, 1, 1, .5), nll (0, .5, 1, 0): differences (1, .5, 0, .5)
    expected = paired_bootstrap({"q0": 1, "q1": 1, "q2": 1, "q3": .5}, {"q0": 0, "q1": .5, "q2": 1, "q3": 0},
                                n_resamples=500)
    assert d["mean"] == pytest.approx(0.5) == expected.mean
    assert (d["low"], d["high"], d["p"], d["n"], d["seeds"], d["scorer"]) == (expected.low, expected.high, expected.p,
                                                                              4, 2, "exact")
    s = paired["rows"]["same"]["b"]
    assert (s["mean"], s["low"], s["high"], s["p"], s["p_holm"]) == (0.0, 0.0, 0.0, 1.0, 1.0)
    # every further scorer of the benchmark is compared too ("other" = 1 - exact here: the mirror image)
    o = paired["rows"]["deft"]["b other"]
    assert o["scorer"] == "other" and o["mean"] == pytest.approx(-0.5) and o["n"] == 4
    family = [paired["rows"][m][c] for m in ("deft", "same") for c in ("b", "b other")]
    assert [c["p_holm"] for c in family] == pytest.approx(holm([c["p"] for c in family]))
    assert set(paired_differences({"nll": ref, "deft": new}, "nll", every_scorer=False)["rows"]["deft"]) == {"b"}
    md = format_paired(paired)
    assert "Paired per problem (bootstrap) difference to `nll`" in md
    assert f"| deft | +50.00 [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]" in md
    assert "| same | +0.00 [+0.00, +0.00] p=1 (exact, n=4, seeds=2) |" in md
    assert paired_differences({"deft": new}, "nll") is None and format_paired(None) == ""


def test_a_further_scorer_is_compared_only_where_every_sample_has_it(tmp_path):
    folder = _eval_folder(tmp_path / "e", "b", [[1], [0]])
    assert problem_scores(folder, every_scorer=True) == {"b": {"q0": 1.0, "q1": 0.0}, "b other": {"q0": 0.0, "q1": 1.0}}
    lines = (folder / "generations.jsonl").read_text().splitlines()
    (folder / "generations.jsonl").write_text(lines[0] + "\n" + lines[1].replace(', "other": 1', "") + "\n")
    assert problem_scores(folder, every_scorer=True) == {"b": {"q0": 1.0, "q1": 0.0}}
    assert problem_scores(folder) == {"b": {"q0": 1.0, "q1": 0.0}}


def test_paired_differences_refuse_different_problem_sets(tmp_path):
    ref = {None: _eval_folder(tmp_path / "a", "b", [[0], [1]])}
    new = {None: _eval_folder(tmp_path / "c", "b", [[0], [1], [1]])}
    with pytest.raises(ValueError, match=r"^b, deft vs nll: paired_bootstrap needs the same problems"):
        paired_differences({"nll": ref, "deft": new}, "nll")
