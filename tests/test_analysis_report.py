"""Tests of deft.analysis.report: the paper's figures from saved runs and probes, as PNG files and one
``index.html`` page."""

import base64
import importlib.util
import json
from pathlib import Path

import pytest

from deft.analysis.paired import format_paired
from deft.analysis.tables import write_tables
from deft.cli.main import main

from plot_helpers import PNG, ReportPage, markdown_rows, probes  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    rows = [{"step": s, "loss": 3.0 - 0.1 * s, "mean_p": 0.05 + 0.02 * s, "mean_focus": 0.05 + 0.03 * s,
             "mean_entropy": 3.0 - 0.1 * s, "frac_p_below_1e-3": 0.3, "mean_gate": 0.5, "tokens": 10}
            for s in range(1, 11)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plot_cli_writes_pngs_and_index(probes, run_dir, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", "--runs", f"deft={run_dir}", "--probes", str(probes["base"]), f"tr={probes['trained']}",
                 "--before", str(probes["base"]), "--after", str(probes["trained"] / "token_stats.npz"),
                 "--objectives", "nll,p,eaft,deft,label_smoothing", "--curve-objectives", "nll,deft",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "label_smoothing" in printed and "learned" in printed
    names = ["training_curves.png", "landscape.png", "distribution.png", "learning.png", "curves.png"]
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 2000, name
    page = (out / "index.html").read_text()
    parsed = ReportPage(page)
    assert [file for _, file in parsed.images] == names
    for src, file in parsed.images:  # inlined: the page needs no file beside it
        assert base64.b64decode(src.removeprefix("data:image/png;base64,")) == (out / file).read_bytes()
    assert "<table>" in page and "base" in page and "tr" in page
    shares = json.loads((out / "learning.json").read_text())
    assert shares["learned"] > 0.5  # every p went up by the shift


def _results():
    ff = lambda em, jw, nll: {"figfont": {"exact": em, "jaro_winkler": jw, "k": 1},  # noqa: E731
                              "heldout": {"heldout_nll": nll, "drift_kl": nll / 10}}
    return {"Base": ff(0.0, 0.36, 8.6),
            "nll": {0: ff(0.0, 0.19, 4.3), 1: ff(0.1, 0.22, 4.1), 2: ff(0.05, 0.20, 4.4)},
            "p": {0: ff(0.0, 0.0, 15.5), 1: ff(0.0, 0.01, 14.0), 2: ff(0.0, 0.02, 16.1)},
            "deft": {0: ff(0.0, 0.25, 5.2), 1: ff(0.1, 0.27, 5.0), 2: ff(0.05, 0.26, 5.3)}}


PAIRED = {"reference": "nll", "n_resamples": 1000, "seed": 0, "unit": "fraction", "rows": {
    m: {"figfont": {"scorer": "exact", "mean": d, "low": d - 0.1, "high": d + 0.05, "p": 0.2, "p_holm": 0.4, "n": 16,
                    "seeds": 3}} for m, d in (("p", -0.0625), ("deft", 0.125))}}


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    """``(report folder, the terminal table)``: ``deft plot --results`` of a comparison folder whose
    results.md is what ``deft compare`` printed."""
    compare = tmp_path_factory.mktemp("compare")
    terminal = write_tables(_results(), compare, title="smollm2-135m on figfont.jsonl")  # what compare prints
    table = json.loads((compare / "table.json").read_text())  # ... and the per-problem table compare adds
    (compare / "table.json").write_text(json.dumps(dict(table, paired=PAIRED)))
    out = tmp_path_factory.mktemp("report")
    assert main(["plot", "--results", str(compare), "--runs", f"deft={run_dir}", "--curve-objectives", "nll,deft",
                 "--out", str(out)]) == 0
    return out, terminal


def test_the_page_leads_with_the_terminal_table_and_is_self_contained(report):
    """The page's first table holds every objective's row and every metric column with the cells the
    terminal printed (results.md), best per column marked, then the differences to nll, then the
    figures; every image is an inline data URI."""
    out, terminal = report
    page = ReportPage((out / "index.html").read_text(encoding="utf-8"))
    table = page.tables["results"]
    assert table == markdown_rows(terminal)
    assert [row[0][0] for row in table[1:]] == ["Base", "nll", "p", "deft"]
    assert [text for text, _ in table[0]] == ["Method", "figfont EM", "figfont JW", "Avg", "drift_kl", "heldout_nll",
                                              "seeds"]
    assert table[4][2] == ("26.00 ± 2.48", "second")  # deft's JW: second to the base model's, marked as such
    assert "best" in {mark for row in table for _, mark in row}
    assert "±" in table[2][1][0]  # intervals over the three seeds
    assert page.tables["differences"] == markdown_rows(terminal.split("Paired difference", 1)[1])
    assert page.order.index("table.results") < page.order.index("img")  # the table first, then the figures
    # the per-problem paired bootstrap table of the comparison, with the cells results.md shows
    assert page.tables["paired"] == markdown_rows(format_paired(PAIRED))
    assert page.tables["paired"][2][1][0].startswith("+12.50 [+2.50, +17.50]* p=0.4")
    assert page.order.index("table.results") < page.order.index("table.paired") < page.order.index("img")
    assert page.refs and all(ref.startswith("data:image/png;base64,") for ref in page.refs)
    assert not list(out.glob(".*.tmp"))  # written atomically, nothing left over


CHROMIUM = Path("/usr/bin/chromium")


def _no_browser() -> str:
    """Why the page cannot be rendered here ('' when it can)."""
    if importlib.util.find_spec("playwright") is None:
        return ("the Playwright package is not installed: pip install playwright, and apt-get install chromium "
                "(Debian's browser; Playwright's own browser download is not used)")
    if not CHROMIUM.is_file():
        return f"no browser at {CHROMIUM}: apt-get install chromium (Debian's package), as root"
    return ""


@pytest.mark.skipif(bool(_no_browser()), reason=_no_browser() or "-")
def test_the_page_renders_in_a_headless_browser_with_every_row(report):
    """A real browser (Debian's chromium driven by Playwright, offline) shows the results table's rows
    and cells as the terminal printed them, and every figure decodes; the page asks for nothing
    outside itself."""
    from playwright.sync_api import sync_playwright

    out, terminal = report
    expected = markdown_rows(terminal)
    outside = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.set_default_timeout(0)  # no wall-clock limit
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto((out / "index.html").as_uri())
            rows = page.eval_on_selector_all(
                "table.results tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))")
            marked = page.eval_on_selector_all(
                "table.results td strong", "cells => cells.map(c => c.innerText.trim())")
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            first = page.evaluate("document.querySelector('table, img').tagName")
        finally:
            browser.close()
    assert rows == [[text for text, _ in row] for row in expected]
    assert marked == [text for row in expected for text, mark in row if mark == "best"]
    assert images and all(done and width > 100 for done, width in images)
    assert first == "TABLE" and not outside


def test_a_missing_results_table_is_one_line_before_anything_is_drawn(tmp_path, capsys):
    assert main(["plot", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no results table here" in err[0] and "deft compare" in err[0]
    assert not (tmp_path / "o").exists()
