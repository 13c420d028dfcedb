"""Cross-regime summary of the replication (docs/results/regimes/run.sh), computed from the
committed per-seed numbers only, so that summary.md regenerates byte for byte from the repository.

Per regime: the probe's verdict; each metric as mean ± 95% t-interval over seeds per objective,
with the share of truncated answers beside every accuracy; the paired difference of every
objective to NLL, marked against a correction for the number of comparisons: the family is every
objective x tested metric against NLL in that regime's table, each comparison gets the paired
t-test's p-value and the family its Holm-Bonferroni adjustment (deft.analysis.intervals). ``*``:
adjusted p < 0.05 (outside the noise after the correction); ``°``: the uncorrected 95% interval
excludes 0 but the comparison does not survive the correction. Truncation shares are descriptive
and not in the family.

Only the objectives run.sh trains in every regime are summarised (:data:`METHODS`); the
intermediate per-seed file also holds the reference code's Cayley_Trans (``cayley_floor``), which
ran in that regime only and is left out of every table (README.md says why).

Usage (from the repository root):
  python docs/results/regimes/summarize.py > docs/results/regimes/summary.md
  python docs/results/regimes/summarize.py --collect runs/regimes   # run folders -> <regime>/per_seed.json
  python docs/results/regimes/summarize.py --tables                 # per_seed.json -> <regime>/results.md, .csv
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REGIMES = ("strong", "intermediate", "weak")
METHODS = ("nll", "p", "cayley", "deft")  # run.sh's OBJECTIVES, in its order
LABELS = {"nll": "NLL", "p": "-p", "cayley": "Cayley", "deft": "DEFT"}
REFERENCE = "nll"
ALPHA = 0.05
# token-level metrics in table order (build_table's titles)
TOKEN_METRICS = ("heldout_nll", "heldout_mean_p", "learned %", "forgotten %", "drift_kl", "retained_nll")
TRUNCATED = " truncated %"  # suffix of the row beside a benchmark's accuracies


def _fail(msg: str) -> None:
    raise SystemExit(f"summarize.py: {msg}")


def read_json(path: Path) -> dict:
    """A committed JSON file, or a one-line error naming it."""
    if not path.is_file():
        _fail(f"{path}: missing; run 'bash docs/results/regimes/run.sh' then '--collect runs/regimes'")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        _fail(f"{path}: not valid JSON ({err})")


def read_per_seed(regime: str) -> dict:
    """``{"Base": results, method: {seed: results}}`` of :data:`METHODS` from ``<regime>/per_seed.json``
    (seeds as ints); other methods in the file are ignored."""
    path = HERE / regime / "per_seed.json"
    data = read_json(path)
    if "Base" not in data or REFERENCE not in data:
        _fail(f"{path}: needs 'Base' and '{REFERENCE}' entries (written by --collect)")
    out = {"Base": data["Base"]}
    for m in METHODS:
        if m in data:
            try:
                out[m] = {int(s): r for s, r in data[m].items()}
            except (AttributeError, ValueError):
                _fail(f"{path}: '{m}' must map seed numbers to results")
    return out


@dataclass
class Comparison:
    """Paired difference of one objective to NLL on one metric: ``diff`` = (mean, 95% half-width, n),
    ``p`` the paired t-test p-value, ``p_holm`` its Holm-adjusted value within the regime's family."""

    diff: tuple
    p: Optional[float]
    p_holm: Optional[float] = None

    @property
    def marker(self) -> str:
        """``*`` survives the correction, ``°`` outside the noise uncorrected only, else empty."""
        from deft.analysis.intervals import outside_noise

        if self.p_holm is not None and self.p_holm < ALPHA:
            return "*"
        return "°" if outside_noise(self.diff) else ""


@dataclass
class Regime:
    """One regime's numbers: ``values[method][title] = {seed: value}`` (display units), the row
    ``titles`` in table order, which of them are ``tested`` (in the family), the ``comparisons``
    ``{(method, title): Comparison}`` and the probe summary."""

    name: str
    probe: dict
    methods: list
    values: dict
    titles: list
    tested: list
    comparisons: dict

    def cell(self, method: str, title: str) -> Optional[tuple]:
        """``(mean, half-width or None, n)`` or ``None`` when the method has no value."""
        from deft.analysis.intervals import mean_interval

        v = [x for x in self.values[method].get(title, {}).values() if x is not None]
        if not v:
            return None
        mean, half = mean_interval(v)
        return mean, half, len(v)

    def family_counts(self) -> tuple[int, int, int]:
        """``(comparisons in the family, surviving Holm, outside the noise uncorrected only)``."""
        marks = [c.marker for (_, t), c in self.comparisons.items() if t in self.tested]
        return len(marks), marks.count("*"), marks.count("°")


def analyse(name: str, data: dict, probe: dict) -> Regime:
    """Tables, paired differences and the Holm-corrected family of one regime."""
    from deft.analysis.intervals import holm, paired_difference, paired_p_value
    from deft.analysis.tables import build_table

    table = build_table(data)
    methods = [m for m in METHODS if m in data]
    values = {m: dict(table.values[m]) for m in table.methods}
    titles, tested = [], []
    for c in table.columns:  # accuracies, each followed by its truncated share (descriptive, not tested)
        if c.group in ("heldout", "_avg"):
            continue
        titles.append(c.title)
        if c.judged:
            tested.append(c.title)
    for t in TOKEN_METRICS:
        if any(table.cell(m, t) for m in methods):
            titles.append(t)
            tested.append(t)
    comparisons = {}
    for m in methods:
        if m == REFERENCE:
            continue
        for t in titles:
            d = paired_difference(values[m][t], values[REFERENCE][t])
            if d is not None:
                comparisons[(m, t)] = Comparison(d, paired_p_value(values[m][t], values[REFERENCE][t]))
    family = [k for k in comparisons if k[1] in tested and comparisons[k].p is not None]
    for k, adj in zip(family, holm([comparisons[k].p for k in family])):
        comparisons[k].p_holm = adj
    return Regime(name, probe, methods, values, titles, tested, comparisons)


def load(name: str) -> Regime:
    """:func:`analyse` of the committed files of one regime."""
    return analyse(name, read_per_seed(name), read_json(HERE / name / "probe" / "probe.json"))


def decimals(title: str) -> int:
    """4 decimals for the token-level metrics (nats, probabilities), 1 for percentages."""
    return 4 if title in ("heldout_nll", "heldout_mean_p", "drift_kl", "retained_nll") else 1


def _fmt(cell: Optional[tuple], dec: int, sign: bool = False) -> str:
    if cell is None:
        return "-"
    mean, half = cell[0], cell[1]
    return f"{mean:{'+' if sign else ''}.{dec}f}" + ("" if half is None else f" ± {half:.{dec}f}")


def regime_section(reg: Regime) -> list[str]:
    """Markdown of one regime: header, means table, differences table."""
    probe, methods = reg.probe, reg.methods
    n, star, deg = reg.family_counts()
    others = [m for m in methods if m != REFERENCE]
    lines = [f"### Model-{reg.name}: probe mean focus {probe['mean_focus']:.3f}, mean p {probe['mean_p']:.3f}, "
             f"verdict **{probe['regime']}**", "",
             "| metric | Base | " + " | ".join(LABELS[m] for m in methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]
    for t in reg.titles:
        dec = decimals(t)
        lines.append(f"| {t} | {_fmt(reg.cell('Base', t), dec)} | "
                     + " | ".join(_fmt(reg.cell(m, t), dec) for m in methods) + " |")
    lines += ["", f"Paired difference to NLL (method - NLL, mean ± 95% interval over seeds). Family: {n} "
              f"comparisons ({len(others)} objectives x {len(reg.tested)} metrics); {star} survive Holm (`*`), "
              f"{deg} more are outside the noise uncorrected only (`°`):", "",
              "| metric | " + " | ".join(LABELS[m] for m in others) + " |", "|---|" + "---:|" * len(others)]
    for t in reg.titles:
        cells = []
        for m in others:
            c = reg.comparisons.get((m, t))
            cells.append("-" if c is None else _fmt(c.diff, decimals(t), sign=True) + c.marker)
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return lines + [""]


HEADER = """# Regime replication: summary tables

Generated by `python docs/results/regimes/summarize.py` from `<regime>/per_seed.json` and
`<regime>/probe/probe.json` (tests/test_results_regimes.py checks that it regenerates byte for byte).
Objectives: {objectives} (run.sh's list), seeds {seeds}. Cells: mean ± 95% t-interval over seeds;
the base model is measured once. `<benchmark> truncated %`: share of greedy answers that hit the
token limit, beside the benchmark's accuracies. Differences: method - NLL, paired by seed.

Correction for multiplicity: in each regime the family is every objective x metric comparison to
NLL in its differences table (accuracies and token-level metrics; truncation rows are descriptive
and not tested). Each comparison gets the paired t-test's two-sided p-value (n - 1 degrees of
freedom) and the family the Holm-Bonferroni step-down adjustment. `*`: Holm-adjusted p < {alpha}
(outside the noise with a family-wise error rate of {alpha_pct}%); `°`: the uncorrected 95% interval
excludes 0 but the comparison does not survive the correction; no mark: within the noise.
"""


def summary_text() -> str:
    """The whole summary.md, from the committed files."""
    regimes = [load(name) for name in REGIMES]
    seeds = sorted({s for r in regimes for m in r.methods for s in r.values[m]["heldout_nll"]})
    out = [HEADER.format(objectives=", ".join(LABELS[m] for m in METHODS), seeds=", ".join(map(str, seeds)),
                         alpha=ALPHA, alpha_pct=round(100 * ALPHA))]
    for reg in regimes:
        out += regime_section(reg)
    return "\n".join(out)


def _read_run(folder: Path) -> dict:
    """results.json without its ``_config`` and heldout.json's metrics of one evaluation folder."""
    res = {}
    if (folder / "results.json").exists():
        res = {k: v for k, v in json.loads((folder / "results.json").read_text()).items() if not k.startswith("_")}
    if (folder / "heldout.json").exists():
        res["heldout"] = json.loads((folder / "heldout.json").read_text())["metrics"]
    return res


def collect(run_root: Path, dest: Path = HERE) -> None:
    """Copy every evaluation's per-seed numbers under ``run_root/<regime>/eval`` (the base model,
    measured once, and ``<method>/seed<k>`` of every method there) into ``dest/<regime>/per_seed.json``."""
    from deft.io import atomic_write_text

    found = False
    for name in REGIMES:
        ev = run_root / name / "eval"
        if not ev.is_dir():
            continue
        found = True
        data = {"Base": _read_run(ev / "base")}
        for method_dir in sorted(p for p in ev.iterdir() if p.is_dir() and p.name != "base"):
            seeds = {f.name[4:]: _read_run(f) for f in sorted(method_dir.glob("seed*"))}
            seeds = {s: r for s, r in seeds.items() if r.get("heldout")}
            if seeds:
                data[method_dir.name] = seeds
        atomic_write_text(dest / name / "per_seed.json", json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"wrote {dest / name / 'per_seed.json'}")
    if not found:
        _fail(f"{run_root}: no <regime>/eval folder (regimes: {', '.join(REGIMES)}); pass run.sh's RUN folder")


def write_result_tables() -> None:
    """Rewrite ``<regime>/results.md``, ``results.csv`` and ``table.json`` (deft compare's tables) from
    the committed per-seed numbers of :data:`METHODS`."""
    from deft.analysis.tables import write_tables

    for name in REGIMES:
        data = read_per_seed(name)
        data = {m: (r if m == "Base" else {str(s): v for s, v in r.items()}) for m, r in data.items()}
        write_tables(data, HERE / name, title=f"smollm2-135m on {name}.train.jsonl")
        print(f"wrote {HERE / name / 'results.md'}")


def main(argv: Optional[list] = None) -> None:
    """Print summary.md (default), or ``--collect`` per-seed numbers from run folders, or ``--tables``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--collect", metavar="RUN_FOLDER", type=Path,
                      help="copy per-seed numbers from run.sh's run folder (e.g. runs/regimes) into "
                           "<regime>/per_seed.json instead of printing the summary")
    mode.add_argument("--tables", action="store_true",
                      help="rewrite <regime>/results.md, results.csv and table.json from per_seed.json")
    args = parser.parse_args(argv)
    if args.collect is not None:
        collect(args.collect)
    elif args.tables:
        write_result_tables()
    else:
        print(summary_text(), end="")


if __name__ == "__main__":
    main()
