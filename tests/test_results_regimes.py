"""The committed regime replication (docs/results/regimes/) against its own data.

* summary.md regenerates byte for byte from the committed per-seed files (summarize.py's default mode);
* run.sh trains exactly the objectives and seeds the tables show, and every count the READMEs
  state ("N objectives x S seeds") is true;
* every number the two READMEs quote from the replication carries a claim annotation,
  ``NUMBER<!--regime|what|metric[|verdict]-->``, and matches the per-seed data at the precision
  written: ``what`` is an objective (``nll``, ``p``, ``cayley``, ``deft``) or ``Base`` for a mean,
  ``<objective>@<seed>`` for one seed's value,
  ``<objective>-nll`` for a paired difference to NLL (a written ``± HALF`` is its 95% half-width,
  a written ``*`` / ``°`` its marker), ``probe`` for a field of the regime's probe.json,
  ``family`` for the size of the regime's corrected family (metric ``comparisons``), how many
  survive the correction (``survive``) or are outside the noise uncorrected only (``uncorrected``).
  The optional verdict (``*``: survives the Holm correction, ``°``: outside the noise uncorrected
  only, ``~``: within the noise) is checked on its own, also without a number before the comment,
  where ``metric`` may be ``all`` (every tested metric of the regime). In the sections that report
  results, a decimal number without an annotation fails the test.
"""

import re
from pathlib import Path

import pytest
from claims_helpers import CLAIM, check_claims, load_script

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "docs" / "results" / "regimes"
READMES = {HERE / "README.md": "## Results", ROOT / "docs" / "results" / "README.md": None}


def _summarize():
    """docs/results/regimes/summarize.py as a module (it is a script, not part of the package)."""
    return load_script("regimes_summarize", HERE / "summarize.py")


@pytest.fixture(scope="module")
def summ():
    return _summarize()


@pytest.fixture(scope="module")
def regimes(summ):
    return {name: summ.load(name) for name in summ.REGIMES}


def test_summary_regenerates_byte_for_byte_from_the_committed_files(summ):
    assert summ.summary_text().encode("utf-8") == (HERE / "summary.md").read_bytes()


def test_collect_rebuilds_the_committed_per_seed_files_from_run_folders(summ, tmp_path):
    """--collect reads deft compare's evaluation folders (results.json with its _config, heldout.json
    with its metrics); run folders laid out from the committed numbers give those numbers back."""
    import json

    for name in summ.REGIMES:
        committed = json.loads((HERE / name / "per_seed.json").read_text())
        ev = tmp_path / "runs" / name / "eval"
        for method, runs in committed.items():
            for seed, res in ({"": runs} if method == "Base" else runs).items():
                folder = ev / "base" if method == "Base" else ev / method / f"seed{seed}"
                folder.mkdir(parents=True)
                results = {k: v for k, v in res.items() if k != "heldout"}
                (folder / "results.json").write_text(json.dumps({**results, "_config": {"model": "x"}}))
                (folder / "heldout.json").write_text(json.dumps({"metrics": res["heldout"], "tokens": []}))
        (ev / "deft" / "seed9").mkdir()  # an evaluation that never finished: no held-out metrics, skipped
    summ.collect(tmp_path / "runs", tmp_path / "out")
    for name in summ.REGIMES:
        assert (tmp_path / "out" / name / "per_seed.json").read_bytes() == (HERE / name / "per_seed.json").read_bytes()
    with pytest.raises(SystemExit, match="no <regime>/eval folder"):
        summ.collect(tmp_path / "nowhere", tmp_path / "out")


def test_summary_marks_follow_the_holm_correction(regimes):
    for reg in regimes.values():
        n, star, degree = reg.family_counts()
        assert n == (len(reg.methods) - 1) * len(reg.tested)
        for (_, title), comp in reg.comparisons.items():
            if title not in reg.tested:  # truncation rows: descriptive, never marked
                assert comp.p_holm is None and comp.marker in ("", "°")
                continue
            assert comp.p_holm >= comp.p  # an adjusted p-value is never below the raw one
            assert (comp.marker == "*") == (comp.p_holm < 0.05)


def test_truncation_is_reported_beside_every_accuracy(regimes):
    for reg in regimes.values():
        accuracies = [t for t in reg.tested if t not in _summarize().TOKEN_METRICS]
        for t in accuracies:
            row = t.rsplit(" ", 1)[0] + _summarize().TRUNCATED
            assert row in reg.titles and reg.titles.index(row) > reg.titles.index(t)
            assert all(reg.cell(m, row) is not None for m in ["Base", *reg.methods])


def _run_sh_list(name: str) -> list[str]:
    match = re.search(rf"^{name}=(\S+)$", (HERE / "run.sh").read_text(), re.M)
    assert match, f"run.sh has no {name}= line"
    return match.group(1).split(",")


def test_run_sh_trains_exactly_what_the_tables_show(summ, regimes):
    objectives, seeds = _run_sh_list("OBJECTIVES"), [int(s) for s in _run_sh_list("SEEDS")]
    assert tuple(objectives) == summ.METHODS
    for reg in regimes.values():
        assert reg.methods == objectives
        for m in objectives:
            assert sorted(reg.values[m]["heldout_nll"]) == seeds, (reg.name, m)
    # the summary's tables name exactly these objectives
    header = [line for line in (HERE / "summary.md").read_text().splitlines() if line.startswith("| metric | Base")]
    assert header and all(line == "| metric | Base | " + " | ".join(summ.LABELS[m] for m in objectives) + " |"
                          for line in header)


def test_every_count_the_readmes_state_is_true(summ):
    n_obj, n_seeds = len(_run_sh_list("OBJECTIVES")), len(_run_sh_list("SEEDS"))
    found = 0
    for path in READMES:
        for a, b in re.findall(r"(\d+) objectives x (\d+) seeds", path.read_text()):
            assert (int(a), int(b)) == (n_obj, n_seeds), path
            found += 1
    assert found >= 2


def _checked_part(path: Path, start) -> str:
    text = path.read_text(encoding="utf-8")
    if start is None:  # docs/results/README.md: the quoted block about the regimes
        return "\n".join(line for line in text.splitlines() if line.startswith(">"))
    return text[text.index(start):]


@pytest.mark.parametrize("path", list(READMES), ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_numbers_match_the_per_seed_data(path, regimes):
    count, problems = check_claims(path.read_text(encoding="utf-8"), regimes)
    assert not problems, "\n".join(problems)
    assert count >= (40 if path.parent == HERE else 3)


@pytest.mark.parametrize("path", list(READMES), ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_results_have_no_unchecked_decimal_number(path):
    part = CLAIM.sub("", _checked_part(path, READMES[path]))
    # model sizes (1.5B) and version-like tokens are not results
    loose = [m.group(0) for m in re.finditer(r"(?<![\w.])\d+\.\d+(?![\d.]*[BM]\b)(?![\w.])", part)]
    assert not loose, f"{path}: numbers without a claim annotation: {loose}"


def test_the_claim_check_fails_when_a_number_drifts(regimes):
    good = ("mean p 0.7805<!--strong|p|heldout_mean_p--> and +0.0261 ± 0.0019*<!--strong|p-nll|heldout_mean_p-->, "
            "6<!--strong|family|survive--> of 18<!--strong|family|comparisons--> <!--weak|cayley-nll|all|~-->")
    assert check_claims(good, regimes) == (5, [])
    for bad in ("mean p 0.7806<!--strong|p|heldout_mean_p-->",  # a drifted mean
                "+0.0262 ± 0.0019*<!--strong|p-nll|heldout_mean_p-->",  # a drifted difference
                "+0.0261 ± 0.0018*<!--strong|p-nll|heldout_mean_p-->",  # a drifted half-width
                "+0.4607°<!--strong|deft-nll|heldout_nll|*-->",  # a verdict the correction does not give
                "+0.4607*<!--strong|deft-nll|heldout_nll-->",  # a marker the correction does not give
                "7<!--strong|family|survive-->",  # a count that is not true
                "6.2<!--weak|p@0|figfont JW-->",  # a seed's value that is not true
                "<!--weak|p|figfont JW-->",  # a mean claim without its number
                "<!--strong|cayley-nll|all|~-->"):  # Cayley's mean p differs from NLL's after correction
        assert check_claims(bad, regimes)[1], bad
