"""Tests of deft.analysis.summary: a section's means over seeds, paired differences to the reference,
the Holm-corrected family and its markdown, from per-seed numbers."""

import pytest

from deft.analysis.intervals import holm, paired_p_value
from deft.analysis.summary import analyse, decimals, format_cell, section_tables


def _results(acc, truncated, nll):
    return {"rg:word_sorting": {"average_at_k": acc, "truncated": truncated},
            "heldout": {"content_nll": nll, "drift_kl": 0.1}}


DATA = {
    "Base": _results(0.1, 0.0, 2.0),
    "nll": {0: _results(0.50, 0.1, 1.00), 1: _results(0.52, 0.1, 1.02), 2: _results(0.54, 0.2, 1.01)},
    # +0.3 nats in every seed (tiny spread): survives any correction; accuracy equal within noise
    "p": {0: _results(0.49, 1.0, 1.30), 1: _results(0.55, 1.0, 1.321), 2: _results(0.52, 1.0, 1.309)},
    "ignored": {0: _results(0.0, 0.0, 9.0)},
}


@pytest.fixture
def section():
    return analyse("intermediate", DATA, {}, methods=["nll", "p"], token_metrics=["content_nll", "drift_kl",
                                                                                  "retained_nll"])


def test_rows_are_accuracies_with_their_truncation_then_the_token_metrics(section):
    assert section.methods == ["nll", "p"]  # methods not asked for are left out
    assert section.titles == ["rg:word_sorting Avg@1", "rg:word_sorting truncated %", "content_nll", "drift_kl"]
    assert section.tested == ["rg:word_sorting Avg@1", "content_nll", "drift_kl"]  # truncation is descriptive
    mean, half, n = section.cell("p", "content_nll")
    assert mean == pytest.approx(1.31) and n == 3 and half > 0
    assert section.cell("Base", "content_nll") == (2.0, None, 1)


def test_the_family_is_holm_corrected_and_marked(section):
    comps = section.comparisons
    assert comps[("p", "rg:word_sorting truncated %")].p_holm is None  # not in the family
    family = [("p", t) for t in section.tested]
    raw = [paired_p_value(section.values["p"][t], section.values["nll"][t]) for _, t in family]
    assert [comps[k].p for k in family] == pytest.approx(raw)
    assert [comps[k].p_holm for k in family] == pytest.approx(holm(raw))
    assert comps[("p", "content_nll")].marker == "*"
    assert comps[("p", "rg:word_sorting Avg@1")].marker == ""
    assert comps[("p", "drift_kl")].diff[0] == pytest.approx(0.0)
    n, star, _ = section.family_counts()
    assert (n, star) == (3, 1)


def test_markdown_shows_base_first_and_the_marked_differences(section):
    lines = section_tables(section, {"nll": "NLL", "p": "-p"})
    assert lines[0] == "| metric | Base | NLL | -p |"
    assert "| content_nll | 2.0000 | 1.0100 ± " in "\n".join(lines)
    assert any(line.startswith("| content_nll | +0.3000 ± ") and line.endswith("* |") for line in lines)
    assert "Family: 3 comparisons (1 objectives x 3 metrics); 1 survive Holm" in "\n".join(lines)


def test_cell_formats():
    assert decimals("content_mean_p") == 4 and decimals("learned %") == 1
    assert format_cell(None, 4) == "-"
    assert format_cell((0.25, None, 1), 2) == "0.25"
    assert format_cell((0.25, 0.125, 3), 3, sign=True) == "+0.250 ± 0.125"


def test_read_evaluation_drops_private_keys_and_adds_the_held_out_metrics(tmp_path):
    import json

    from deft.analysis.summary import read_evaluation

    (tmp_path / "results.json").write_text(json.dumps({"figfont": {"exact": 0.5}, "_config": {"n": 2}}))
    assert read_evaluation(tmp_path) == {"figfont": {"exact": 0.5}}
    (tmp_path / "heldout.json").write_text(json.dumps({"hash": "h", "metrics": {"content_nll": 1.5}}))
    assert read_evaluation(tmp_path) == {"figfont": {"exact": 0.5}, "heldout": {"content_nll": 1.5}}
    assert read_evaluation(tmp_path / "missing") == {}


def test_read_seeded_makes_seeds_ints_keeps_the_methods_and_names_the_file_on_bad_input(tmp_path):
    import json

    import pytest

    from deft.analysis.summary import read_json_file, read_seeded

    path = tmp_path / "per_seed.json"
    path.write_text(json.dumps({"Base": {"a": 1}, "nll": {"0": {"a": 2}, "1": {"a": 3}}, "other": {"0": {}}}))
    assert read_seeded(path, ["nll", "deft"], "nll", missing="x") == {"Base": {"a": 1},
                                                                      "nll": {0: {"a": 2}, 1: {"a": 3}}}
    with pytest.raises(ValueError, match=rf"^{tmp_path}/gone.json: missing; run it$"):
        read_json_file(tmp_path / "gone.json", missing="run it")
    path.write_text("{")
    with pytest.raises(ValueError, match=r"per_seed.json: not valid JSON \("):
        read_seeded(path, ["nll"], "nll", missing="x")
    path.write_text(json.dumps({"Base": {}}))
    with pytest.raises(ValueError, match=r"per_seed.json: needs 'Base' and 'nll' entries \(written by --collect\)$"):
        read_seeded(path, ["nll"], "nll", missing="x")
    path.write_text(json.dumps({"Base": {}, "nll": {"zero": {}}}))
    with pytest.raises(ValueError, match=r"per_seed.json: 'nll' must map seed numbers to results$"):
        read_seeded(path, ["nll"], "nll", missing="x")
