"""Summary of evidence v2 (docs/results/v2/run.sh), computed from the committed files only, so that
summary.md regenerates byte for byte from the repository.

One section per learning rate (2e-4, ours; 5e-5, the paper's), each with:

* the means over seeds and the paired differences to NLL of every metric, marked against the
  Holm-Bonferroni correction over the section's family (:mod:`deft.analysis.summary`, the code of
  the regime replication's summary);
* the paired bootstrap **over held-out records** of the content metrics (each record's content
  sums from ``heldout.json``'s ``per_record``), against NLL;
* the **per-problem** paired bootstrap of every accuracy (:func:`deft.analysis.intervals.paired_bootstrap`):
  each objective against NLL, and each objective (NLL too) against the base model, a problem's
  score averaged over seeds first; the p-values of each table are Holm-corrected together. Against
  the base model, ``rg:word_sorting`` measures learning and ``rg:number_format`` (never trained on)
  forgetting as accuracy.

The screen of the untrained tasks (``screen.json``: the base model's accuracy on reasoning-gym tasks,
used to pick the forgetting task) and the probe of the base model (``probe/probe.json``) come first.

Usage (from the repository root):
  python docs/results/v2/summarize.py > docs/results/v2/summary.md
  python docs/results/v2/summarize.py --collect runs/v2   # run folders -> <section>/per_*.json, screen.json
"""

from __future__ import annotations

import argparse
import json
from functools import lru_cache
from pathlib import Path
from typing import Optional

from deft.analysis.summary import Section, analyse, read_evaluation, read_json_file, read_seeded, section_tables

HERE = Path(__file__).resolve().parent
SECTIONS = {"lr2e-4": "intermediate-lr2e-4", "lr5e-5": "intermediate-lr5e-5"}  # section -> run.sh's folder
BASE_SECTION = "lr2e-4"  # the base model is evaluated once, in this folder
METHODS = ("nll", "p", "cayley", "deft")  # run.sh's OBJECTIVES, in its order
LABELS = {"Base": "Base", "nll": "NLL", "p": "-p", "cayley": "Cayley", "deft": "DEFT"}
REFERENCE = "nll"
TOKEN_METRICS = ("content_nll", "content_mean_p", "content learned %", "content forgotten %", "end_mean_p",
                 "drift_kl", "retained_nll")
N_RESAMPLES = 10000


def _fail(msg: str) -> None:
    raise SystemExit(f"summarize.py: {msg}")


MISSING = "run 'bash docs/results/v2/run.sh' (it ends with --collect)"


def read_json(path: Path) -> dict:
    """A committed JSON file, or a one-line error naming it."""
    try:
        return read_json_file(path, missing=MISSING)
    except ValueError as err:
        _fail(str(err))


def read_section(name: str) -> tuple[dict, dict, dict]:
    """``(per-seed results, per-problem scores, per-record content sums)`` of one section, each
    ``{"Base": x, method: {seed: x}}``."""
    try:
        return tuple(read_seeded(HERE / name / file, METHODS, REFERENCE, missing=MISSING)
                     for file in ("per_seed.json", "per_problem.json", "per_record.json"))
    except ValueError as err:
        _fail(str(err))


def bootstrap_table(problems: dict, reference: str, methods: list) -> dict:
    """``{method: {benchmark: BootstrapDifference}}`` of each method against ``reference`` per problem
    (scores averaged over seeds first), with ``{"p_holm": {(method, benchmark): p}}`` over the table."""
    from deft.analysis.intervals import holm, paired_bootstrap

    def per_problem(entry, base: bool) -> dict:
        runs = [entry] if base else list(entry.values())
        out: dict = {}
        for run in runs:
            for bench, scores in run.items():
                for pid, score in scores.items():
                    out.setdefault(bench, {}).setdefault(pid, []).append(score)
        return out

    ref = per_problem(problems[reference], reference == "Base")
    rows: dict = {}
    for m in methods:
        if m == reference or m not in problems:
            continue
        scores = per_problem(problems[m], m == "Base")
        for bench in [b for b in ref if b in scores]:
            rows.setdefault(m, {})[bench] = paired_bootstrap(scores[bench], ref[bench], n_resamples=N_RESAMPLES)
    keys = [(m, b) for m, cells in rows.items() for b in cells]
    adjusted = holm([rows[m][b].p for m, b in keys])
    return {"rows": rows, "p_holm": dict(zip(keys, adjusted))}


RECORD_METRICS = {"content_nll": ("content_logp_sum", -1.0), "content_mean_p": ("content_p_sum", 1.0)}


def record_scores(per_record: dict) -> dict:
    """``{metric: {record: value}}`` of one measurement's per-record content sums, scaled so that the
    mean over records is the pooled metric: ``value_r = sign · sum_r · R / Σ_r tokens_r``
    (``content_nll`` from the log-probability sums, ``content_mean_p`` from the probability sums)."""
    tokens = per_record["content_tokens"]
    scale = len(tokens) / sum(tokens)
    return {metric: {r: sign * v * scale for r, v in enumerate(per_record[key])}
            for metric, (key, sign) in RECORD_METRICS.items()}


def record_table(records: dict, reference: str, methods: list) -> dict:
    """``{"rows": {method: {metric: BootstrapDifference}}, "p_holm": {(method, metric): p}}``: the
    paired bootstrap over held-out records of each content metric against ``reference`` (each
    record's value averaged over seeds first; Holm over the table)."""
    from deft.analysis.intervals import holm, paired_bootstrap

    def per_metric(entry) -> dict:
        out: dict = {}
        for seed_sums in entry.values():
            for metric, values in record_scores(seed_sums).items():
                for r, v in values.items():
                    out.setdefault(metric, {}).setdefault(r, []).append(v)
        return out

    ref = per_metric(records[reference])
    rows = {m: {metric: paired_bootstrap(values, ref[metric], n_resamples=N_RESAMPLES)
                for metric, values in per_metric(records[m]).items()}
            for m in methods if m != reference and m in records}
    keys = [(m, metric) for m, cells in rows.items() for metric in cells]
    return {"rows": rows, "p_holm": dict(zip(keys, holm([rows[m][k].p for m, k in keys])))}


@lru_cache(maxsize=None)  # the bootstraps take seconds; the committed files do not change in a process
def load(name: str) -> Section:
    """The section's analysis (:func:`deft.analysis.summary.analyse`) with its bootstrap tables in
    ``extra``: ``"vs_nll"`` and ``"vs_base"`` per problem (:func:`bootstrap_table`),
    ``"records_vs_nll"`` per held-out record (:func:`record_table`)."""
    per_seed, per_problem, per_record = read_section(name)
    sec = analyse(name, per_seed, read_json(HERE / "probe" / "probe.json"), methods=METHODS,
                  token_metrics=TOKEN_METRICS, reference=REFERENCE)
    sec.extra = {"vs_nll": bootstrap_table(per_problem, REFERENCE, list(METHODS)),
                 "vs_base": bootstrap_table(per_problem, "Base", list(METHODS)),
                 "records_vs_nll": record_table(per_record, REFERENCE, list(METHODS))}
    return sec


def bootstrap_marker(table: dict, method: str, bench: str) -> str:
    """``*`` where the Holm-adjusted p is below 0.05, ``°`` where only the uncorrected interval excludes 0."""
    d = table["rows"][method][bench]
    if table["p_holm"][(method, bench)] < 0.05:
        return "*"
    return "°" if d.excludes_zero() else ""


def bootstrap_lines(table: dict, reference: str) -> list[str]:
    """Markdown table of :func:`bootstrap_table` in percentage points."""
    rows = table["rows"]
    benches: list = []
    for cells in rows.values():
        benches += [b for b in cells if b not in benches]
    lines = ["| method | " + " | ".join(benches) + " |", "|---|" + "---:|" * len(benches)]
    for m, cells in rows.items():
        texts = []
        for b in benches:
            d = cells.get(b)
            texts.append("-" if d is None else f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
                         f"{bootstrap_marker(table, m, b)}")
        lines.append(f"| {LABELS[m]} - {LABELS[reference]} | " + " | ".join(texts) + " |")
    return lines


def record_lines(table: dict) -> list[str]:
    """Markdown table of :func:`record_table` (4 decimals)."""
    lines = ["| method | " + " | ".join(RECORD_METRICS) + " |", "|---|" + "---:|" * len(RECORD_METRICS)]
    for m, cells in table["rows"].items():
        texts = [f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]{bootstrap_marker(table, m, metric)}"
                 for metric, d in cells.items()]
        lines.append(f"| {LABELS[m]} - {LABELS[REFERENCE]} | " + " | ".join(texts) + " |")
    return lines


def section_text(sec: Section) -> list[str]:
    """Markdown of one section: the seed tables, then the two per-problem bootstrap tables."""
    n_problems = {b: d.n for cells in sec.extra["vs_nll"]["rows"].values() for b, d in cells.items()}
    out = [f"## Learning rate {sec.name[2:]}", ""] + section_tables(sec, LABELS) + [""]
    out += ["Per problem (paired bootstrap over the problems, " + ", ".join(f"{n} {b}" for b, n in n_problems.items())
            + f"; a problem's score averaged over the seeds; {N_RESAMPLES} resamples), accuracy difference in "
            "percentage points, mean [95% percentile interval]; `*`: Holm-adjusted p < 0.05 over the table, "
            "`°`: the uncorrected interval excludes 0 only.", "", "Against NLL:", ""]
    out += bootstrap_lines(sec.extra["vs_nll"], REFERENCE) + ["", "Against the base model (`rg:word_sorting`: "
                                                                "learning; `rg:number_format`, never trained on: "
                                                                "forgetting):", ""]
    out += bootstrap_lines(sec.extra["vs_base"], "Base") + [""]
    n_records = next(iter(next(iter(sec.extra["records_vs_nll"]["rows"].values())).values())).n
    out += [f"Per held-out record (paired bootstrap over the {n_records} records; a record's content-token sums "
            "averaged over the seeds; the mean over records is the pooled content metric), difference to NLL, mean "
            "[95% percentile interval]; `*` / `°` as above, Holm over this table:", ""]
    return out + record_lines(sec.extra["records_vs_nll"]) + [""]


def screen_lines() -> list[str]:
    """The screen of reasoning-gym tasks: the base model's greedy accuracy and truncation on each."""
    screen = read_json(HERE / "screen.json")
    lines = [f"## Screen: the base model on reasoning-gym tasks ({screen['n']} problems each, greedy, "
             f"{screen['max_new_tokens']} new tokens)", "",
             "| task | accuracy % | exactly right | truncated % |", "|---|---:|---:|---:|"]
    for task, row in screen["tasks"].items():
        lines.append(f"| {task} | {100 * row['accuracy']:.1f} | {row['right']} of {row['n']} | "
                     f"{100 * row['truncated']:.1f} |")
    return lines + [""]


HEADER = """# Evidence v2: summary tables

Generated by `python docs/results/v2/summarize.py` from `<section>/per_seed.json`,
`<section>/per_problem.json`, `<section>/per_record.json`, `screen.json` and `probe/probe.json`
(tests/test_results_v2.py checks that it regenerates byte for byte). Model-intermediate regime
(reasoning-gym `word_sorting`) on the embedded SmolLM2-135M-Instruct; objectives {objectives};
seeds {seeds}. Seed tables: mean ± 95% t-interval over seeds (the base model is measured once);
differences paired by seed, with the paired t-test's p-value and the Holm-Bonferroni correction
over each section's family (`*`: adjusted p < 0.05; `°`: the uncorrected interval excludes 0
only). With two seeds the t-interval has one degree of freedom: the bootstrap tables over held-out
records and over problems carry the power.

Probe of the base model on the training set: mean focus {focus:.3f}, mean p {mean_p:.3f}, verdict
**{verdict}**.
"""


def summary_text() -> str:
    """The whole summary.md, from the committed files."""
    sections = [load(name) for name in SECTIONS]
    seeds = sorted({s for sec in sections for m in sec.methods for s in sec.values[m]["content_nll"]})
    probe = sections[0].probe
    out = [HEADER.format(objectives=", ".join(LABELS[m] for m in METHODS), seeds=", ".join(map(str, seeds)),
                         focus=probe["mean_focus"], mean_p=probe["mean_p"], verdict=probe["regime"])]
    out += screen_lines()
    for sec in sections:
        out += section_text(sec)
    return "\n".join(out)


def _screen(run_root: Path) -> dict:
    """screen.json from run.sh's screen evaluation (``RUN/screen``)."""
    results = json.loads((run_root / "screen" / "results.json").read_text())
    cfg = results["_config"]
    right: dict = {}
    with open(run_root / "screen" / "generations.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            right[rec["benchmark"]] = right.get(rec["benchmark"], 0) + (rec["scores"][rec["benchmark"]] == 1.0)
    tasks = {b: {"accuracy": r["average_at_k"], "right": right.get(b, 0), "n": r["n"], "truncated": r["truncated"]}
             for b, r in results.items() if b.startswith("rg:")}
    return {"n": cfg["n"], "max_new_tokens": cfg["max_new_tokens"], "tasks": tasks}


def collect(run_root: Path, dest: Path = HERE) -> None:
    """Copy run.sh's measurements under ``run_root`` into ``dest``: per section ``per_seed.json``
    (results and held-out metrics) and ``per_problem.json`` (each problem's score,
    :func:`deft.analysis.paired.problem_scores`) of the base model and of every ``<method>/seed<k>``;
    and ``screen.json``."""
    from deft.analysis.paired import problem_scores
    from deft.io import atomic_write_text

    base = run_root / SECTIONS[BASE_SECTION] / "eval" / "base"
    if not (base / "results.json").is_file():
        _fail(f"{base}: no finished base evaluation; pass run.sh's RUN folder (e.g. runs/v2) after it finished")
    for name, folder in SECTIONS.items():
        ev = run_root / folder / "eval"
        seeds_data, problems = {"Base": read_evaluation(base)}, {"Base": problem_scores(base)}
        records = {"Base": seeds_data["Base"]["heldout"].pop("per_record")}
        for method_dir in sorted(p for p in ev.iterdir() if p.is_dir() and p.name != "base"):
            done = {f.name[4:]: f for f in sorted(method_dir.glob("seed*"))
                    if (f / "results.json").exists() and (f / "heldout.json").exists()}
            if done:
                seeds_data[method_dir.name] = {s: read_evaluation(f) for s, f in done.items()}
                problems[method_dir.name] = {s: problem_scores(f) for s, f in done.items()}
                records[method_dir.name] = {s: r["heldout"].pop("per_record")
                                            for s, r in seeds_data[method_dir.name].items()}
        for file, data in (("per_seed.json", seeds_data), ("per_problem.json", problems),
                           ("per_record.json", records)):
            atomic_write_text(dest / name / file, json.dumps(data, indent=1, sort_keys=True) + "\n")
            print(f"wrote {dest / name / file}")
    atomic_write_text(dest / "screen.json", json.dumps(_screen(run_root), indent=1, sort_keys=True) + "\n")


def main(argv: Optional[list] = None) -> None:
    """Print summary.md (default), or ``--collect`` the numbers from run folders."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect", metavar="RUN_FOLDER", type=Path,
                        help="copy per-seed and per-problem numbers from run.sh's run folder (e.g. runs/v2) into "
                             "<section>/per_seed.json and per_problem.json instead of printing the summary")
    args = parser.parse_args(argv)
    if args.collect is not None:
        collect(args.collect)
    else:
        print(summary_text(), end="")


if __name__ == "__main__":
    main()
