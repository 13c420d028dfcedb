"""Tests of deft.analysis.tables: result tables of a comparison: pure functions over saved results (no
model, no training)."""

import pytest

from deft.analysis.tables import (TABLE_FILE, build_table, format_differences, format_html, format_markdown,
                                  read_tables, write_tables)

from plot_helpers import ReportPage, markdown_rows


def _ff(em, jw):
    return {"figfont": {"exact": em, "jaro_winkler": jw, "k": 1}}


def test_one_seed_table_marks_best_bold_and_second_underlined():
    table = build_table({"Base": _ff(0.0, 0.30), "nll": _ff(0.25, 0.60), "deft": _ff(0.50, 0.55)})
    assert [c.title for c in table.columns][:3] == ["figfont EM", "figfont JW", "Avg"]
    assert table.cell("deft", "Avg") == (pytest.approx(52.5), None, 1)
    md = format_markdown(table)
    assert "| deft | **50.00** | <u>55.00</u> | **52.50** | 1 |" in md
    assert "| nll | <u>25.00</u> | **60.00** | <u>42.50</u> | 1 |" in md
    assert "One seed" in md
    tied = format_markdown(build_table({"a": _ff(0.0, 0.1), "b": _ff(0.0, 0.2)}))
    assert "| a | 0.00 |" in tied and "| b | 0.00 | **20.00** |" in tied  # a column where all tie: no mark
    math = build_table({"a": {"math500": {"average_at_k": 0.4, "k": 16}}})
    assert [c.title for c in math.columns][:2] == ["math500 Avg@16", "Avg"]


def test_seeded_table_marks_only_differences_outside_the_noise():
    h = lambda nll: {"heldout": {"heldout_nll": nll, "drift_kl": 0.1 * nll}}  # noqa: E731
    results = {
        "Base": {**_ff(0.0, 0.30), **h(3.0)},
        # nll and deft: deft's JW is higher on every seed by 5 +- 1 points -> outside the noise
        "nll": {0: {**_ff(0.10, 0.50), **h(2.0)}, 1: {**_ff(0.30, 0.52), **h(2.1)}, 2: {**_ff(0.20, 0.54), **h(2.2)}},
        "deft": {0: {**_ff(0.30, 0.55), **h(2.05)}, 1: {**_ff(0.10, 0.58), **h(2.0)}, 2: {**_ff(0.20, 0.58), **h(2.3)}},
    }
    table = build_table(results)
    assert table.seeds("nll") == 3 and table.seeds("Base") == 1
    mean, half, n = table.cell("deft", "figfont JW")
    assert (mean, n) == (pytest.approx(57.0), 3)
    assert half == pytest.approx(4.303 * (3 ** 0.5) / 3 ** 0.5)  # values 55, 58, 58: s = sqrt(3)
    md = format_markdown(table)
    row = next(line for line in md.splitlines() if line.startswith("| deft |"))
    cells = row.split(" | ")
    # EM: deft - nll differences +20, -20, 0 -> inside the noise: no bold, means 20.00 both
    assert cells[1] == "20.00 ± 24.84"
    # JW: deft - nll = 5, 6, 4 -> mean 5 +- 2.48: bold
    assert cells[2].startswith("**57.00 ± ")
    # heldout_nll (lower is better): Base 3.0 is worst; nll 2.1 vs deft 2.1167 -> tie within noise, no marks
    assert "**" not in row.split(" | ")[4]
    assert "intervals" in md or "95% interval" in md
    diff = format_differences(table)
    deft_row = next(line for line in diff.splitlines() if line.startswith("| deft |"))
    # EM differences 20, -20, 0: s = 20, half-width 4.303 * 20 / sqrt(3) = 49.69, no star
    assert "| deft | +0.00 ± 49.69 | +5.00 ± 2.48* |" in deft_row


def test_figure1_shares_are_percent_columns_learned_higher_forgotten_lower_is_better():
    h = lambda learned, forgotten: {"heldout": {"heldout_nll": 2.0, "learned": learned, "forgotten": forgotten}}  # noqa: E731
    table = build_table({"Base": {"heldout": {"heldout_nll": 3.0}}, "nll": h(0.40, 0.10), "deft": h(0.55, 0.05)})
    assert table.cell("deft", "learned %") == (pytest.approx(55.0), None, 1)
    assert table.cell("Base", "learned %") is None
    md = format_markdown(table)
    assert "| learned % | forgotten % |" in md
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[3:5] for line in md.splitlines() if line.startswith("| ")}
    assert rows["deft"] == ["**55.0**", "**5.0**"]  # more learned, less forgotten: both best
    assert rows["nll"] == ["40.0", "10.0"] and rows["Base"] == ["-", "-"]


def _seeded():
    h = lambda nll: {"heldout": {"heldout_nll": nll, "drift_kl": 0.1 * nll}}  # noqa: E731
    return {
        "Base": {**_ff(0.0, 0.30), **h(3.0)},
        "nll": {0: {**_ff(0.10, 0.50), **h(2.0)}, 1: {**_ff(0.30, 0.52), **h(2.1)}, 2: {**_ff(0.20, 0.54), **h(2.2)}},
        "deft": {0: {**_ff(0.30, 0.55), **h(2.05)}, 1: {**_ff(0.10, 0.58), **h(2.0)}, 2: {**_ff(0.20, 0.58), **h(2.3)}},
        "p <&>": {0: {**_ff(0.0, 0.1), **h(5.0)}, 1: {**_ff(0.0, 0.2), **h(5.5)}, 2: {**_ff(0.0, 0.1), **h(6.0)}},
    }


@pytest.mark.parametrize("results", [_seeded(), {"Base": _ff(0.0, 0.3), "nll": _ff(0.25, 0.6), "deft": _ff(0.5, 0.55)}],
                         ids=["seeds", "one-seed"])
def test_html_tables_have_the_cells_and_marks_of_the_markdown_tables(results):
    table = build_table(results)
    page = ReportPage(format_html(table, title="m on d"))
    assert page.tables["results"] == markdown_rows(format_markdown(table))
    assert any(mark == "best" for row in page.tables["results"] for _, mark in row)
    assert page.tables["differences"] == markdown_rows(format_differences(table))
    assert not ReportPage(format_html(table, reference="absent")).tables.get("differences")
    if "p <&>" in results:
        assert "p &lt;&amp;&gt;" in format_html(table)  # method names are escaped


def test_tables_are_saved_with_their_inputs_and_read_back(tmp_path):
    md = write_tables(_seeded(), tmp_path, title="m on d")
    saved = read_tables(tmp_path)
    assert saved["title"] == "m on d" and saved["reference"] == "nll"
    again = build_table(saved["results"])  # seeds come back as strings from JSON; the table is the same
    assert format_markdown(again, title="m on d") + "\n" + format_differences(again) == md
    assert read_tables(tmp_path / TABLE_FILE)["results"] == saved["results"]
    with pytest.raises(FileNotFoundError, match="no results table here"):
        read_tables(tmp_path / "elsewhere")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_tables(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1]")
    with pytest.raises(ValueError, match="not a results table"):
        read_tables(tmp_path / "other.json")


def _classes(content_nll, content_p, end_p, all_p, learned=None, forgotten=None):
    h = {"content_nll": content_nll, "content_mean_p": content_p, "end_mean_p": end_p, "end_nll": 0.1,
         "heldout_nll": 0.7 * content_nll, "heldout_mean_p": all_p, "drift_kl": 0.5, "retained_nll": 1.0}
    if learned is not None:
        h.update(content_learned=learned, content_forgotten=forgotten, learned=learned + 0.3, forgotten=forgotten)
    return {**_ff(0.0, 0.3), "heldout": h}


# the replication's pattern: p's all-token mean p matches the others, on end-of-turn tokens alone
CLASSES = {"Base": _classes(6.0, 0.05, 0.01, 0.04), "nll": _classes(3.0, 0.30, 0.90, 0.45, 0.40, 0.10),
           "p": _classes(9.0, 0.01, 0.99, 0.30, 0.02, 0.50), "deft": _classes(3.5, 0.32, 0.95, 0.46, 0.45, 0.08)}
TOKEN_TITLES = ["content_nll", "content_mean_p", "content learned %", "content forgotten %", "end_mean_p", "drift_kl",
                "retained_nll", "heldout_nll", "heldout_mean_p", "learned %", "forgotten %"]


def test_content_token_columns_lead_and_are_marked_per_column():
    md = format_markdown(build_table(CLASSES))
    lines = md.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Method", "figfont EM", "figfont JW", "Avg", *TOKEN_TITLES, "seeds"]
    rows = {line.split(" | ")[0][2:]: dict(zip(header[1:], line.strip(" |").split(" | ")[1:]))
            for line in lines[2:] if line.startswith("| ")}
    assert rows["nll"]["content_nll"] == "**3.0000**" and rows["deft"]["content_nll"] == "<u>3.5000</u>"
    assert rows["deft"]["content_mean_p"] == "**0.3200**" and rows["p"]["content_mean_p"] == "0.0100"
    assert rows["deft"]["content learned %"] == "**45.0**" and rows["Base"]["content learned %"] == "-"
    assert rows["deft"]["content forgotten %"] == "**8.0**" and rows["p"]["content forgotten %"] == "50.0"
    assert rows["p"]["end_mean_p"] == "**0.9900**"  # p wins only the end-of-turn column
    assert "content_*" in md and "end-of-turn" in md  # the footnote says what the classes are


def test_saved_tables_carry_the_content_columns(tmp_path):
    write_tables(CLASSES, tmp_path, title="m on d")
    head = (tmp_path / "results.csv").read_text().splitlines()
    assert head[0].split(",")[:15] == ["method", "figfont EM", "figfont JW", "Avg", *TOKEN_TITLES]
    p_row = dict(zip(head[0].split(","), next(r for r in head[1:] if r.startswith("p,")).split(",")))
    assert float(p_row["content_mean_p"]) == 0.01 and float(p_row["end_mean_p"]) == 0.99
    assert float(p_row["content forgotten %"]) == 50.0
    saved = read_tables(tmp_path)["results"]
    assert saved["p"]["heldout"]["content_nll"] == 9.0
    assert "| content_nll | content_mean_p |" in (tmp_path / "results.md").read_text()


def test_truncated_share_follows_each_accuracy_unmarked_and_outside_the_average():
    def ff(em, jw, cut):
        return {"figfont": {"exact": em, "jaro_winkler": jw, "k": 1, "truncated": cut}}

    table = build_table({"Base": ff(0.0, 0.30, 1.0), "nll": ff(0.25, 0.60, 0.5), "p": ff(0.0, 0.0, 0.0)})
    titles = [c.title for c in table.columns]
    assert titles[:4] == ["figfont EM", "figfont JW", "figfont truncated %", "Avg"]
    assert table.cell("Base", "figfont truncated %") == (pytest.approx(100.0), None, 1)
    assert table.cell("nll", "Avg") == (pytest.approx(42.5), None, 1)  # the accuracies only
    md = format_markdown(table)
    # p truncates least but gets no mark: the share describes the answers, it does not rank them
    assert "| p | 0.00 | 0.00 | 0.0 |" in md and "| Base | 0.00 | <u>30.00</u> | 100.0 |" in md
