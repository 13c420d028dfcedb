"""The paper's Tables 1-3 as data, so that a measured number can stand beside the published one.

The three tables are kept as the paper prints them (tab-separated rows, copied from the paper's
text; ``<u>...</u>`` marks its underlined second-best values and is dropped from the number) and
parsed once into cells keyed by ``(regime, model key, method, benchmark)``:

* Table 1 — Model-Strong, NuminaMath-CoT training; Average@16 accuracy (the reference's
  ``mean_acc``) on MATH500, Minerva Math, OlympiadBench, AIME24, AMC23 and their mean.
* Table 2 — Model-Intermediate, m23K training; accuracy on the ten sources of the m1 medical
  evaluation file (MedMCQA, MedQA, PubMedQA, MMLU-Pro, GPQA, Lancet, MedBullets 4/5 options,
  MedXpertQA, NEJM) and their mean.
* Table 3 — Model-Weak, FigFont training; exact match (printed "Exact Math") and Jaro-Winkler
  similarity, in percent.

Rows are the paper's methods: ``Base`` (the untrained model), ``-logp`` (NLL, the reference's
``original``), ``-p`` (``p``), ``EAFT``, ``Cayley-Trans`` (``Cayley_Trans``, deft's
``cayley_floor``) and ``DEFT`` (``deft``). :func:`paper_method` maps any of these spellings and
deft objective specs to the row; :func:`paper_benchmark` maps deft's benchmark names, the m1
source names and the paper's column titles to a column. :func:`paper_value` returns one cell and
where it comes from; :func:`with_paper_column` puts the paper's number beside each number of a
results table (the ``build_table`` shape of :mod:`deft.analysis.tables`).
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional, Sequence

__all__ = ["TABLE_TEXT", "REGIME_TABLE", "MODEL_OF_KEY", "METHODS", "BENCHMARKS", "COLUMN_TITLES", "PaperValue",
           "paper_method", "paper_benchmark", "paper_value", "paper_cells", "paper_row", "with_paper_column",
           "paper_comparison", "format_paper_markdown"]

# Copied from the paper's text (tab-separated); do not reformat.
_TABLE1 = """\
Models	Methods	Math500	Minerva Math	Olympiad Bench	AIME24	AMC23	Avg
LLaMA-3.1-8B	Base	1.76	0.68	0.86	0.00	1.25	0.91
	-logp	17.58	6.15	3.11	0.00	5.63	6.49
	-p	23.91	9.91	5.69	0.62	10.00	10.03
	EAFT	16.84	6.20	3.44	0.00	7.34	6.76
	Cayley-Trans	25.99	10.46	6.18	0.21	9.06	<u>10.38</u>
	DEFT	26.26	10.21	6.43	1.03	12.81	11.35
DeepseekMath-7B	Base	5.70	2.89	1.51	0.00	2.34	2.49
	-logp	28.48	9.91	6.65	0.21	8.75	10.80
	-p	39.52	19.28	14.51	1.03	17.18	18.30
	EAFT	27.70	9.26	6.96	0.21	11.09	11.04
	Cayley-Trans	39.03	13.78	12.26	0.41	16.72	16.44
	DEFT	40.90	15.48	12.63	1.65	20.31	<u>18.19</u>
Qwen2.5-Math-1.5B	Base	30.71	8.81	14.88	2.49	17.97	14.97
	-logp	41.70	11.81	11.39	1.45	17.66	16.80
	-p	63.48	25.14	26.37	6.47	39.22	32.14
	EAFT	40.48	11.86	11.50	0.41	14.53	15.76
	Cayley-Trans	56.04	21.75	21.96	1.86	28.44	26.01
	DEFT	<u>61.41</u>	<u>24.13</u>	<u>24.96</u>	<u>5.63</u>	<u>35.63</u>	<u>30.35</u>
Qwen2.5-Math-7B	Base	40.38	13.66	16.36	6.04	24.69	20.23
	-logp	52.93	19.17	17.75	2.90	24.53	23.46
	-p	67.98	28.46	32.12	9.38	41.25	<u>35.84</u>
	EAFT	51.53	20.36	17.54	2.08	25.47	23.40
	Cayley-Trans	66.16	31.70	30.25	7.09	39.53	34.95
	DEFT	68.78	30.68	32.19	8.14	42.97	36.55
"""

_TABLE2 = """\
Model	MedMc	MedQA	PubMed	MMLU-P	GPQA	Lancet	MedB(4)	MedB(5)	MedX	NEJM	Avg
LLaMA-3.1-8B											
Base	23.57	29.14	21.00	20.00	29.49	22.57	30.52	20.45	10.01	20.73	22.75
-logp	55.08	60.10	72.70	52.38	36.66	62.60	46.75	43.50	15.87	56.50	50.21
-p	53.62	53.62	75.60	53.74	44.10	58.25	47.07	40.26	13.18	58.21	49.77
EAFT	55.13	61.12	75.10	54.20	34.62	57.77	53.25	45.78	16.91	57.88	51.18
Cayley-Trans	54.63	62.14	75.10	54.59	38.46	57.52	51.62	45.78	15.73	59.20	<u>51.48</u>
DEFT	54.77	60.57	76.00	54.07	44.87	59.70	50.97	47.72	14.08	57.21	52.00
LLaMA-3.2-3B											
Base	21.30	21.92	22.60	11.40	23.08	25.00	23.05	15.26	10.35	23.22	19.72
-logp	42.22	48.86	66.60	35.44	32.82	44.90	45.13	37.34	12.56	44.44	41.03
-p	40.09	43.36	65.60	34.07	38.72	42.72	35.71	33.44	11.18	38.31	38.32
EAFT	43.61	48.70	68.20	36.42	36.15	41.50	36.69	31.49	11.46	42.79	39.70
Cayley-Trans	42.67	46.43	66.80	37.65	32.56	45.63	41.56	35.71	10.63	39.30	39.89
DEFT	42.31	46.27	66.20	36.35	33.08	47.33	39.94	33.44	11.73	42.45	<u>39.91</u>
Qwen2.5-1.5B											
Base	22.21	21.84	18.50	11.21	24.36	22.57	24.03	17.53	10.84	18.74	19.18
-logp	38.85	40.06	68.80	35.24	32.56	36.89	36.69	28.25	9.94	32.50	35.98
-p	37.39	39.75	66.90	35.70	27.69	41.75	32.79	31.17	11.73	38.97	36.38
EAFT	39.85	39.91	68.90	36.03	40.77	39.08	35.06	29.87	10.70	34.49	37.47
Cayley-Trans	39.23	39.75	67.10	35.44	28.72	39.56	34.42	26.30	11.25	32.17	<u>35.39</u>
DEFT	37.84	41.08	69.50	35.44	34.62	38.83	39.61	32.79	12.42	32.34	37.45
Qwen2.5-Math-7B											
Base	35.84	27.26	49.30	30.23	35.90	30.34	24.03	18.18	10.21	24.71	28.60
-logp	36.60	34.96	71.70	36.35	35.90	37.14	27.27	29.22	11.59	26.30	34.70
-p	35.48	33.54	72.50	39.15	26.92	39.32	31.49	23.05	10.77	28.03	34.03
EAFT	35.98	35.19	72.90	37.39	35.38	37.14	32.47	30.19	10.63	27.36	35.46
Cayley-Trans	37.49	33.62	72.00	37.52	33.59	39.56	31.82	25.65	10.84	27.03	<u>34.91</u>
DEFT	35.96	33.70	69.50	35.60	33.59	36.65	31.17	31.17	9.52	25.90	34.28
"""

_TABLE3 = """\
Models	Metric	Base	$-\\log p$	$-p$	EAFT	Cayley-Trans	DEFT
LLaMA-3.1-8B	Exact Math	0.00	0.00	0.00	0.00	<u>0.01</u>	1.56
	Jaro_winkler similarity	30.17	33.40	14.26	<u>42.71</u>	36.95	46.34
LLaMA-3.2-3B	Exact Math	0.00	0.00	0.00	0.00	0.00	3.91
	Jaro_winkler similarity	41.89	40.37	7.68	39.15	<u>46.55</u>	60.22
Qwen2.5-1.5B	Exact Math	0.00	0.00	0.00	0.00	0.00	0.00
	Jaro_winkler similarity	35.32	33.65	28.13	31.01	34.21	<u>33.66</u>
Qwen2.5-7B	Exact Math	0.00	0.78	0.00	47.66	0.00	<u>42.97</u>
	Jaro_winkler similarity	44.92	40.01	27.13	89.09	34.41	<u>86.82</u>
"""

TABLE_TEXT = {1: _TABLE1, 2: _TABLE2, 3: _TABLE3}
REGIME_TABLE = {"math": 1, "medical": 2, "figfont": 3}

#: the paper's model names per reference model key (scripts/one_click/TEMPLATE.py keys)
MODEL_OF_KEY = {
    "qwen-2.5-math-1.5b": "Qwen2.5-Math-1.5B", "qwen-2.5-math-7b": "Qwen2.5-Math-7B",
    "qwen-2.5-1.5b": "Qwen2.5-1.5B", "qwen-2.5-7b": "Qwen2.5-7B", "llama-3.1-8b": "LLaMA-3.1-8B",
    "llama-3.2-3b": "LLaMA-3.2-3B", "deepseek-math-7b": "DeepseekMath-7B",
}
_KEY_OF_MODEL = {name: key for key, name in MODEL_OF_KEY.items()}
METHODS = ("Base", "-logp", "-p", "EAFT", "Cayley-Trans", "DEFT")
_TABLE3_METHOD = {"Base": "Base", "$-\\log p$": "-logp", "$-p$": "-p", "EAFT": "EAFT", "Cayley-Trans": "Cayley-Trans",
                  "DEFT": "DEFT"}

#: canonical column names per regime, in the paper's order ("avg": the paper's mean column)
BENCHMARKS = {
    "math": ("math500", "minerva_math", "olympiadbench", "aime24", "amc23", "avg"),
    "medical": ("medmcqa", "medqa", "pubmedqa", "mmlu_pro", "gpqa", "lancet", "medbullets_op4", "medbullets_op5",
                "medxpertqa", "nejm", "avg"),
    "figfont": ("exact", "jaro_winkler"),
}
#: the paper's column (or metric) title of each canonical column
COLUMN_TITLES = {
    "math": dict(zip(BENCHMARKS["math"], ("Math500", "Minerva Math", "Olympiad Bench", "AIME24", "AMC23", "Avg"))),
    "medical": dict(zip(BENCHMARKS["medical"], ("MedMc", "MedQA", "PubMed", "MMLU-P", "GPQA", "Lancet", "MedB(4)",
                                                 "MedB(5)", "MedX", "NEJM", "Avg"))),
    "figfont": {"exact": "Exact Math", "jaro_winkler": "Jaro_winkler similarity"},
}


class PaperValue(NamedTuple):
    """One published number (percent) and where it is printed; ``value`` is None when the paper
    has no such cell, and ``source`` then says why."""

    value: Optional[float]
    source: str


def _number(text: str) -> float:
    return float(re.sub(r"</?u>", "", text).strip())


def _parse() -> dict[tuple[str, str, str, str], PaperValue]:
    """Every cell of Tables 1-3: ``(regime, model key, method, benchmark) -> PaperValue``."""
    cells = {}

    def put(regime, model, method, bench, raw):
        table = REGIME_TABLE[regime]
        title = COLUMN_TITLES[regime][bench]
        where = f"Table {table}, row {model} / {method}, column {title}"
        cells[(regime, _KEY_OF_MODEL[model], method, bench)] = PaperValue(_number(raw), where)

    model = None
    for line in _TABLE1.splitlines()[1:]:  # model in the first cell of its first row only
        first, method, *values = line.split("\t")
        model = first or model
        for bench, raw in zip(BENCHMARKS["math"], values, strict=True):
            put("math", model, method, bench, raw)
    for line in _TABLE2.splitlines()[1:]:  # a model's name on a row of its own
        first, *values = line.split("\t")
        if not any(v.strip() for v in values):
            model = first
            continue
        for bench, raw in zip(BENCHMARKS["medical"], values, strict=True):
            put("medical", model, first, bench, raw)
    header = _TABLE3.splitlines()[0].split("\t")[2:]
    metric_of = {"Exact Math": "exact", "Jaro_winkler similarity": "jaro_winkler"}
    for line in _TABLE3.splitlines()[1:]:  # transposed: methods are columns, metrics rows
        first, metric, *values = line.split("\t")
        model = first or model
        for title, raw in zip(header, values, strict=True):
            put("figfont", model, _TABLE3_METHOD[title], metric_of[metric], raw)
    return cells


_CELLS = _parse()

# exact spellings (case-insensitive) of each method: the paper's, the reference's, deft's names
_METHOD_NAMES = {
    "base": "Base", "-logp": "-logp", "logp": "-logp", "-log p": "-logp", "original": "-logp", "nll": "-logp",
    "-p": "-p", "p": "-p", "eaft": "EAFT", "cayley-trans": "Cayley-Trans", "cayley_trans": "Cayley-Trans",
    "cayley_floor": "Cayley-Trans", "deft": "DEFT",
}


def paper_method(objective: str) -> Optional[str]:
    """The paper's row (one of :data:`METHODS`) for an objective: ``Base``/``base``, the paper's
    labels (``-logp``, ``Cayley-Trans``), the reference's names (``original``, ``p``,
    ``Cayley_Trans``, ``DEFT``) or a deft spec equal to one of the compared objectives with its
    default parameters (``nll``, ``p``, ``eaft``, ``cayley_floor``, ``deft``). None for a valid
    objective the paper does not report (e.g. ``p[p>=0.1]``); ``ValueError`` for an invalid one."""
    text = str(objective).strip()
    if text.lower() in _METHOD_NAMES:
        return _METHOD_NAMES[text.lower()]
    from ..objectives import parse_objective

    spec = parse_objective(text).spec  # raises ValueError naming the valid objectives
    for name in ("nll", "p", "eaft", "cayley_floor", "deft"):
        if spec == parse_objective(name).spec:
            return _METHOD_NAMES[name]
    return None


_MEDICAL_PATTERNS = (  # first match wins: medmcqa and pubmedqa contain "medqa"
    ("medmc", "medmcqa"), ("pubmed", "pubmedqa"), ("medqa", "medqa"), ("mmlu", "mmlu_pro"), ("gpqa", "gpqa"),
    ("lancet", "lancet"), ("medx", "medxpertqa"), ("nejm", "nejm"),
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_benchmark(regime: str, name: str) -> Optional[str]:
    """The canonical column (an entry of :data:`BENCHMARKS`) for a benchmark or column name:
    deft's benchmark names (``math500``, ``minerva_math``, ...; a table title such as
    ``math500 Avg@16``), the reference's (``math_oai``), the m1 source names
    (``medical/MedQA_USLME_test``; ``medical``, the mean over sources, is ``avg``), the paper's
    titles (``MedB(4)``, ``Exact Math``), FigFont metrics (``exact``/``EM``/``exact_paper``,
    ``jaro_winkler``/``JW``) and ``Avg``. None when the name is none of the regime's columns."""
    _check_regime(regime)
    text = str(name).strip()
    for prefix in ("medical/", "medical:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    key = _key(text)
    if regime == "math":
        for pattern, bench in (("math500", "math500"), ("mathoai", "math500"), ("minerva", "minerva_math"),
                               ("olympiad", "olympiadbench"), ("aime24", "aime24"), ("amc23", "amc23")):
            if pattern in key:
                return bench
    elif regime == "medical":
        for pattern, bench in _MEDICAL_PATTERNS:
            if pattern in key:
                return bench
        if "medb" in key and ("4" in key or "5" in key):
            return "medbullets_op4" if "4" in key else "medbullets_op5"
        if key == "medical":
            return "avg"
    else:
        if "jaro" in key or key == "jw" or key.endswith("jw"):
            return "jaro_winkler"
        if "normalized" in key:  # lower-cased exact match: not the paper's raw "Exact Math"
            return None
        if "exact" in key or key == "em" or key.endswith("em"):
            return "exact"
        return None
    return "avg" if key.startswith(("avg", "average", "mean")) else None


def _check_regime(regime: str) -> None:
    if regime not in REGIME_TABLE:
        raise ValueError(f"regime {regime!r}: unknown; use one of {', '.join(REGIME_TABLE)}")


def _check_key(model_key: str) -> None:
    if model_key not in MODEL_OF_KEY:
        raise ValueError(f"model key {model_key!r}: unknown; use one of {', '.join(MODEL_OF_KEY)}")


def paper_value(regime: str, model_key: str, objective: str, benchmark: str) -> PaperValue:
    """The published number (percent) of one cell and its table, row and column, e.g.
    ``paper_value("math", "qwen-2.5-math-1.5b", "p", "math500")`` ->
    ``PaperValue(63.48, "Table 1, row Qwen2.5-Math-1.5B / -p, column Math500")``. A valid cell the
    paper does not print (another model, objective or benchmark) gives ``value`` None and the
    reason; an unknown regime, model key, benchmark or an invalid objective raises ``ValueError``
    naming the valid ones."""
    _check_regime(regime)
    _check_key(model_key)
    bench = paper_benchmark(regime, benchmark)
    if bench is None:
        raise ValueError(f"benchmark {benchmark!r}: not a column of the paper's {regime} table; use one of "
                         f"{', '.join(BENCHMARKS[regime])}")
    method = paper_method(objective)
    table = REGIME_TABLE[regime]
    if method is None:
        return PaperValue(None, f"Table {table} has no row for objective {objective!r} (rows: {', '.join(METHODS)})")
    cell = _CELLS.get((regime, model_key, method, bench))
    if cell is None:
        models = sorted({k for r, k, _, _ in _CELLS if r == regime})
        return PaperValue(None, f"Table {table} has no rows for {model_key} (its models: {', '.join(models)})")
    return cell


def paper_row(regime: str, model_key: str, objective: str) -> dict[str, float]:
    """Every published number of one row: ``{benchmark: value}`` in the paper's column order;
    empty when the paper has no such row."""
    _check_regime(regime)
    _check_key(model_key)
    method = paper_method(objective)
    return {b: _CELLS[(regime, model_key, method, b)].value for b in BENCHMARKS[regime]
            if (regime, model_key, method, b) in _CELLS}


def paper_cells(titles: Sequence[str], methods: Sequence[str], *, regime: str,
                model_key: str) -> list[list[PaperValue]]:
    """The published cell beside each cell of a results table (``titles`` its column titles,
    ``methods`` its row names: ``Base`` and objective specs). A column that is none of the paper's
    gets ``value`` None; so does an ``Avg`` column unless the table has every benchmark the
    paper's mean is over (a mean over fewer benchmarks is another number)."""
    _check_regime(regime)
    _check_key(model_key)
    benches = [paper_benchmark(regime, t) for t in titles]
    missing = [b for b in BENCHMARKS[regime] if b != "avg" and b not in benches]
    table = REGIME_TABLE[regime]
    out = []
    for method in methods:
        row = []
        for title, bench in zip(titles, benches):
            if bench is None:
                row.append(PaperValue(None, f"column {title!r} is not in Table {table}"))
            elif bench == "avg" and missing:
                row.append(PaperValue(None, f"the paper's Avg also covers {', '.join(missing)}"))
            else:
                try:
                    row.append(paper_value(regime, model_key, method, bench))
                except ValueError as err:  # a row label that is no objective (e.g. a seed summary)
                    row.append(PaperValue(None, str(err)))
        out.append(row)
    return out


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def with_paper_column(titles: Sequence[str], rows: Sequence[Sequence[Optional[float]]], methods: Sequence[str], *,
                      regime: str, model_key: str, digits: int = 2) -> list[list[str]]:
    """Text cells ``"measured (paper X.XX, Δ +Y.YY)"`` for a results table in percent (the
    ``(titles, rows, methods)`` of :func:`deft.analysis.tables.build_table`); Δ = measured - paper.
    A cell without a published number keeps the measured value alone; a missing measurement is
    ``-`` (with the paper's number when there is one)."""
    cells = paper_cells(titles, methods, regime=regime, model_key=model_key)
    out = []
    for row, papers in zip(rows, cells):
        texts = []
        for measured, paper in zip(row, papers):
            if measured is None:
                texts.append("-" if paper.value is None else f"- (paper {_fmt(paper.value, digits)})")
            elif paper.value is None:
                texts.append(_fmt(measured, digits))
            else:
                delta = measured - paper.value
                texts.append(f"{_fmt(measured, digits)} (paper {_fmt(paper.value, digits)}, Δ {delta:+.{digits}f})")
        out.append(texts)
    return out


def paper_comparison(titles: Sequence[str], rows: Sequence[Sequence[Optional[float]]], methods: Sequence[str], *,
                     regime: str, model_key: str) -> list[dict]:
    """One record per cell with a published number: ``method``, ``column``, ``measured``,
    ``paper``, ``delta`` (measured - paper, None when unmeasured) and ``source`` (table, row,
    column); ready for a CSV next to ``results.csv``."""
    cells = paper_cells(titles, methods, regime=regime, model_key=model_key)
    records = []
    for method, row, papers in zip(methods, rows, cells):
        for title, measured, paper in zip(titles, row, papers):
            if paper.value is None:
                continue
            delta = None if measured is None else measured - paper.value
            records.append({"method": method, "column": title, "measured": measured, "paper": paper.value,
                            "delta": delta, "source": paper.source})
    return records


def format_paper_markdown(titles: Sequence[str], rows: Sequence[Sequence[Optional[float]]], methods: Sequence[str],
                          *, regime: str, model_key: str, title: str = "") -> str:
    """A markdown table of :func:`with_paper_column` cells, with a line naming the table and model
    rows the published numbers come from."""
    cells = with_paper_column(titles, rows, methods, regime=regime, model_key=model_key)
    lines = [f"### {title}", ""] if title else []
    lines.append("| Method | " + " | ".join(titles) + " |")
    lines.append("|---|" + "---:|" * len(titles))
    for method, texts in zip(methods, cells):
        lines.append(f"| {method} | " + " | ".join(texts) + " |")
    lines += ["", f"Paper numbers: Table {REGIME_TABLE[regime]}, rows of {MODEL_OF_KEY[model_key]} "
                  f"(Δ = measured - paper, in points)."]
    return "\n".join(lines) + "\n"
