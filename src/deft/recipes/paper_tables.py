"""The paper's Tables 1-3 as data, so that a measured number can stand beside the published one.

Transcribed verbatim (tab-separated, as the rows appear in the paper text; ``<u>...</u>`` marks the
paper's underlined second-best and is dropped from the value). :func:`paper_value` returns one
cell with the table and row it comes from. Method names are the paper's (``-logp``, ``-p``,
``EAFT``, ``Cayley-Trans``, ``DEFT``, ``Base``); :data:`METHOD_OF_OBJECTIVE` maps deft's objective
specs and the reference's names to them.

* Table 1 (model-strong, NuminaMath): Average@16 accuracy per math benchmark and their average.
* Table 2 (model-intermediate, m23K medical): accuracy per medical benchmark and their average.
* Table 3 (model-weak, FigFont): exact match and Jaro-Winkler similarity.
"""

from __future__ import annotations

import re
from typing import Optional

__all__ = ["TABLES", "MODEL_OF_KEY", "METHOD_OF_OBJECTIVE", "paper_value", "paper_rows"]

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
Models	Metric	Base	$-\log p$	$-p$	EAFT	Cayley-Trans	DEFT
LLaMA-3.1-8B	Exact Math	0.00	0.00	0.00	0.00	<u>0.01</u>	1.56
	Jaro_winkler similarity	30.17	33.40	14.26	<u>42.71</u>	36.95	46.34
LLaMA-3.2-3B	Exact Math	0.00	0.00	0.00	0.00	0.00	3.91
	Jaro_winkler similarity	41.89	40.37	7.68	39.15	<u>46.55</u>	60.22
Qwen2.5-1.5B	Exact Math	0.00	0.00	0.00	0.00	0.00	0.00
	Jaro_winkler similarity	35.32	33.65	28.13	31.01	34.21	<u>33.66</u>
Qwen2.5-7B	Exact Math	0.00	0.78	0.00	47.66	0.00	<u>42.97</u>
	Jaro_winkler similarity	44.92	40.01	27.13	89.09	34.41	<u>86.82</u>
"""

# the reference's model keys (scripts/one_click/TEMPLATE.py) -> the paper's model names
MODEL_OF_KEY = {
    "qwen-2.5-math-1.5b": "Qwen2.5-Math-1.5B", "qwen-2.5-math-7b": "Qwen2.5-Math-7B", "qwen-2.5-1.5b": "Qwen2.5-1.5B",
    "qwen-2.5-7b": "Qwen2.5-7B", "llama-3.1-8b": "LLaMA-3.1-8B", "llama-3.2-3b": "LLaMA-3.2-3B",
    "deepseek-math-7b": "DeepseekMath-7B",
}
# deft objective specs and the reference's objective names -> the paper's method names
METHOD_OF_OBJECTIVE = {
    "base": "Base", "nll": "-logp", "original": "-logp", "p": "-p", "eaft": "EAFT", "cayley_floor": "Cayley-Trans",
    "cayley_trans": "Cayley-Trans", "deft": "DEFT",
}
_METHOD_NAMES = {r"$-\log p$": "-logp", "$-p$": "-p"}


def _value(text: str) -> float:
    return float(re.sub(r"</?u>", "", text).strip())


def _parse_table1() -> list[dict]:
    lines = _TABLE1.strip("\n").splitlines()
    benches = lines[0].split("\t")[2:]
    rows, model = [], None
    for line in lines[1:]:
        cells = line.split("\t")
        model = cells[0] or model
        for bench, v in zip(benches, cells[2:]):
            rows.append({"table": 1, "regime": "math", "model": model, "method": cells[1], "benchmark": bench,
                         "value": _value(v), "row": f"{model} / {cells[1]}"})
    return rows


def _parse_table2() -> list[dict]:
    lines = _TABLE2.strip("\n").splitlines()
    benches = lines[0].split("\t")[1:]
    rows, model = [], None
    for line in lines[1:]:
        cells = line.split("\t")
        if not any(cells[1:]):  # a model heading row
            model = cells[0]
            continue
        for bench, v in zip(benches, cells[1:]):
            rows.append({"table": 2, "regime": "medical", "model": model, "method": cells[0], "benchmark": bench,
                         "value": _value(v), "row": f"{model} / {cells[0]}"})
    return rows


def _parse_table3() -> list[dict]:
    lines = _TABLE3.strip("\n").splitlines()
    methods = [_METHOD_NAMES.get(m, m) for m in lines[0].split("\t")[2:]]
    rows, model = [], None
    for line in lines[1:]:
        cells = line.split("\t")
        model = cells[0] or model
        metric = "EM" if cells[1].startswith("Exact") else "JW"
        for method, v in zip(methods, cells[2:]):
            rows.append({"table": 3, "regime": "figfont", "model": model, "method": method, "benchmark": metric,
                         "value": _value(v), "row": f"{model} / {cells[1]}"})
    return rows


TABLES: list[dict] = _parse_table1() + _parse_table2() + _parse_table3()


def _method(objective: str) -> str:
    key = objective.strip().lower().replace("-", "_")
    return METHOD_OF_OBJECTIVE.get(key, objective)


def paper_rows(regime: str, model_key: str) -> list[dict]:
    """Every published cell of ``regime`` (math, medical, figfont) for the reference model key."""
    model = MODEL_OF_KEY.get(model_key)
    return [r for r in TABLES if r["regime"] == regime and r["model"] == model]


def paper_value(regime: str, model_key: str, objective: str, benchmark: str) -> Optional[dict]:
    """The published cell (``{"table", "row", "value", ...}``) for a regime, model key, objective
    (deft spec or reference name) and benchmark column (Table 1/2 column title, ``Avg``, or
    ``EM`` / ``JW`` for Table 3); ``None`` when the paper has no such cell."""
    method = _method(objective)
    for r in paper_rows(regime, model_key):
        if r["method"] == method and r["benchmark"].lower() == benchmark.lower():
            return r
    return None
