"""Tests of deft.recipes.paper_tables: the paper's Tables 1-3 as data, so that a measured number can
stand beside the published one."""

import glob
import re
from pathlib import Path

import pytest

from deft.recipes.paper_tables import (BENCHMARKS, COLUMN_TITLES, METHODS, MODEL_OF_KEY, paper_benchmark,
                                       paper_comparison, paper_method, paper_row, paper_value, with_paper_column)

# the paper's text, where a copy of the project's shared folder sits beside the repository
SEED = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / "shared" / "seeds" / "002_*.txt")))


def _section(text: str, table: int) -> str:
    start = text.index(f"Table {table} |")
    following = [m.start() for m in re.finditer(r"^Table \d+ \|", text, re.M) if m.start() > start]
    return text[start:following[0] if following else len(text)]


@pytest.mark.parametrize("regime,key,objective,bench,value,row,column", [
    ("math", "qwen-2.5-math-1.5b", "p", "math500", 63.48, "Qwen2.5-Math-1.5B / -p", "Math500"),
    ("math", "qwen-2.5-math-1.5b", "DEFT", "amc23", 35.63, "Qwen2.5-Math-1.5B / DEFT", "AMC23"),  # underlined
    ("math", "llama-3.1-8b", "Cayley_Trans", "avg", 10.38, "LLaMA-3.1-8B / Cayley-Trans", "Avg"),
    ("math", "deepseek-math-7b", "original", "olympiadbench", 6.65, "DeepseekMath-7B / -logp", "Olympiad Bench"),
    ("math", "qwen-2.5-math-7b", "base", "aime24", 6.04, "Qwen2.5-Math-7B / Base", "AIME24"),
    ("medical", "llama-3.1-8b", "deft", "avg", 52.00, "LLaMA-3.1-8B / DEFT", "Avg"),
    ("medical", "llama-3.2-3b", "cayley_floor", "medical/GPQA_Medical_test", 32.56, "LLaMA-3.2-3B / Cayley-Trans",
     "GPQA"),
    ("medical", "qwen-2.5-math-7b", "EAFT", "MedBullets_op5", 30.19, "Qwen2.5-Math-7B / EAFT", "MedB(5)"),
    ("medical", "qwen-2.5-1.5b", "nll", "medical/PubMedQA_test", 68.80, "Qwen2.5-1.5B / -logp", "PubMed"),
    ("figfont", "qwen-2.5-7b", "eaft", "figfont EM", 47.66, "Qwen2.5-7B / EAFT", "Exact Math"),
    ("figfont", "llama-3.2-3b", "DEFT", "jaro_winkler", 60.22, "LLaMA-3.2-3B / DEFT", "Jaro_winkler similarity"),
    ("figfont", "llama-3.1-8b", "Cayley_Trans", "exact", 0.01, "LLaMA-3.1-8B / Cayley-Trans", "Exact Math"),
    ("figfont", "qwen-2.5-1.5b", "-logp", "JW", 33.65, "Qwen2.5-1.5B / -logp", "Jaro_winkler similarity"),
])
def test_transcribed_cells(regime, key, objective, bench, value, row, column):
    cell = paper_value(regime, key, objective, bench)
    table = {"math": 1, "medical": 2, "figfont": 3}[regime]
    assert cell.value == value
    assert cell.source == f"Table {table}, row {row}, column {column}"


def test_every_cell_is_transcribed_and_the_means_agree():
    rows = {(r, k, m): paper_row(r, k, m) for r in BENCHMARKS for k in MODEL_OF_KEY for m in METHODS}
    filled = {key: row for key, row in rows.items() if row}
    assert len(filled) == 3 * 4 * 6  # four models per table, six methods each
    assert sum(len(row) for row in filled.values()) == 4 * 6 * (6 + 11 + 2)
    for (regime, key, method), row in filled.items():
        assert list(row) == list(BENCHMARKS[regime])
        if "avg" in row:  # the printed mean agrees with the printed benchmarks (two-decimal rounding)
            parts = [v for b, v in row.items() if b != "avg"]
            assert abs(sum(parts) / len(parts) - row["avg"]) <= 0.006, (regime, key, method)


@pytest.mark.skipif(not SEED, reason="the paper's text is not available beside the repository")
def test_every_row_is_printed_in_the_paper_text_under_its_model():
    text = re.sub(r"</?u>", "", Path(SEED[0]).read_text(encoding="utf-8"))
    labels = {"Base": "Base", "-logp": "-logp", "-p": "-p", "EAFT": "EAFT", "Cayley-Trans": "Cayley-Trans",
              "DEFT": "DEFT"}
    for regime, table in (("math", 1), ("medical", 2)):
        section = _section(text, table)
        models = sorted(((section.index(MODEL_OF_KEY[k] + "\t"), k) for k in MODEL_OF_KEY
                         if paper_row(regime, k, "Base")))
        for i, (start, key) in enumerate(models):
            end = models[i + 1][0] if i + 1 < len(models) else len(section)
            block = section[start:end]
            for method in METHODS:
                values = "\t".join(f"{v:.2f}" for v in paper_row(regime, key, method).values())
                assert f"{labels[method]}\t{values}\n" in block, (regime, key, method)
    section = _section(text, 3)  # transposed: a model's first line starts with its name
    for key in MODEL_OF_KEY:
        if not paper_row("figfont", key, "Base"):
            continue
        lines = []
        for metric in ("exact", "jaro_winkler"):
            values = "\t".join(f"{paper_row('figfont', key, m)[metric]:.2f}" for m in METHODS)
            lines.append(f"{COLUMN_TITLES['figfont'][metric]}\t{values}\n")
        assert f"{MODEL_OF_KEY[key]}\t{lines[0]}\t{lines[1]}" in section, key


def test_names_map_to_the_paper_rows_and_columns():
    names = ("original", "logp", "nll", "p", "Cayley_Trans", "cayley_floor", "DEFT", "deft", "EAFT", "eaft:k=20",
             "Base")
    assert [paper_method(n) for n in names] == ["-logp", "-logp", "-logp", "-p", "Cayley-Trans", "Cayley-Trans",
                                                "DEFT", "DEFT", "EAFT", "EAFT", "Base"]
    assert paper_method("p[p>=0.1]") is None and paper_method("cayley") is None and paper_method("eaft:k=5") is None
    with pytest.raises(ValueError, match="valid objectives"):
        paper_method("nonsense")
    assert paper_benchmark("math", "math_oai") == "math500" and paper_benchmark("math", "math500 Avg@16") == "math500"
    assert paper_benchmark("medical", "medical/MedMCQA_validation") == "medmcqa"
    assert paper_benchmark("medical", "medical/MedQA_USLME_test") == "medqa"
    assert paper_benchmark("medical", "MedBullets_op4") == "medbullets_op4"
    assert paper_benchmark("medical", "medical") == "avg"
    assert paper_benchmark("figfont", "exact_normalized_paper") is None  # not the paper's raw exact match
    assert paper_benchmark("figfont", "figfont JW") == "jaro_winkler"


def test_cells_the_paper_does_not_print_and_bad_names():
    missing = paper_value("math", "qwen-2.5-7b", "DEFT", "math500")
    assert missing.value is None and "no rows for qwen-2.5-7b" in missing.source
    assert paper_value("figfont", "llama-3.2-3b", "p[p>=0.1]", "exact").value is None
    for args, match in [(("algebra", "qwen-2.5-7b", "p", "x"), "regime 'algebra': unknown; use one of math, "),
                        (("math", "gpt-9", "p", "math500"), "model key 'gpt-9': unknown; use one of qwen-2.5-math"),
                        (("math", "llama-3.1-8b", "p", "gsm8k"), "not a column .* math500, minerva_math")]:
        with pytest.raises(ValueError, match=match):
            paper_value(*args)


def test_paper_column_beside_measured_numbers():
    titles = ["math500 Avg@16", "aime24 Avg@16", "Avg"]
    rows = [[30.0, 2.5, 16.25], [None, 1.0, 1.0], [60.0, 5.0, 32.5]]
    cells = with_paper_column(titles, rows, ["Base", "nll", "p[p>=0.1]"], regime="math", model_key="qwen-2.5-math-1.5b")
    # hand-computed: 30.00 - 30.71 = -0.71, 2.50 - 2.49 = +0.01; the mean covers two of five benchmarks
    assert cells[0] == ["30.00 (paper 30.71, Δ -0.71)", "2.50 (paper 2.49, Δ +0.01)", "16.25"]
    assert cells[1] == ["- (paper 41.70)", "1.00 (paper 1.45, Δ -0.45)", "1.00"]
    assert cells[2] == ["60.00", "5.00", "32.50"]  # no such row in the paper
    records = paper_comparison(titles, rows, ["Base", "nll", "p[p>=0.1]"], regime="math",
                               model_key="qwen-2.5-math-1.5b")
    assert [(r["method"], r["column"], r["paper"]) for r in records] == [
        ("Base", "math500 Avg@16", 30.71), ("Base", "aime24 Avg@16", 2.49), ("nll", "math500 Avg@16", 41.70),
        ("nll", "aime24 Avg@16", 1.45)]
    assert records[0]["delta"] == pytest.approx(-0.71) and records[2]["delta"] is None
    full = ["Math500", "Minerva Math", "Olympiad Bench", "AIME24", "AMC23", "Avg"]
    cell = with_paper_column(full, [[0.0] * 5 + [1.0]], ["deft"], regime="math", model_key="llama-3.1-8b")[0][-1]
    assert cell == "1.00 (paper 11.35, Δ -10.35)"
