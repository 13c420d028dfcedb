"""Cross-regime summary of the replication (docs/results/regimes/run.sh): per regime the probe's
verdict, then each metric as mean ± 95% interval over seeds per objective, and the paired
difference of every objective to NLL (``*``: its 95% interval excludes 0). Also copies each
evaluation's per-seed numbers (results.json without its _config, heldout.json metrics) into
docs/results/regimes/<regime>/per_seed.json, so that every cell can be recomputed from the repository.

Usage: python docs/results/regimes/summarize.py [RUN_FOLDER] > docs/results/regimes/summary.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deft.analysis.intervals import outside_noise, paired_difference
from deft.analysis.tables import build_table

HERE = Path(__file__).parent
REGIMES = ("strong", "intermediate", "weak")
METHODS = ("nll", "p", "cayley", "deft", "cayley_floor")
LABELS = {"nll": "NLL", "p": "-p", "cayley": "Cayley", "deft": "DEFT", "cayley_floor": "Cayley_Trans"}
# (column title in the table, lower is better)
METRICS = {"heldout_nll": True, "heldout_mean_p": False, "learned %": False, "forgotten %": True,
           "drift_kl": True, "retained_nll": True}


def _read(folder: Path) -> dict:
    res = {}
    if (folder / "results.json").exists():
        res = {k: v for k, v in json.loads((folder / "results.json").read_text()).items() if not k.startswith("_")}
    if (folder / "heldout.json").exists():
        res["heldout"] = json.loads((folder / "heldout.json").read_text())["metrics"]
    return res


def per_seed(run: Path) -> dict:
    """``{method: {seed: results}}`` (the base model, measured once: its results) of one regime's folder."""
    out = {"Base": _read(run / "eval" / "base")}
    for method in METHODS:
        seeds = {}
        for folder in sorted((run / "eval" / method).glob("seed*")):
            res = _read(folder)
            if res.get("heldout"):
                seeds[int(folder.name[4:])] = res
        if seeds:
            out[method] = seeds
    return out


def _decimals(title: str) -> int:
    """4 decimals for the token-level metrics (nats, probabilities), 1 for percentages."""
    return 4 if title in ("heldout_nll", "heldout_mean_p", "drift_kl", "retained_nll") else 1


def _cell(table, method, title, decimals):
    c = table.cell(method, title)
    if c is None:
        return "-"
    mean, half, _ = c
    return f"{mean:.{decimals}f}" + ("" if half is None else f" ± {half:.{decimals}f}")


def _diff(table, method, title, decimals):
    d = paired_difference(table.values[method][title], table.values["nll"][title])
    if d is None or method == "nll":
        return ""
    mean, half, _ = d
    star = "*" if outside_noise(d) else ""
    return f"{mean:+.{decimals}f}" + ("" if half is None else f" ± {half:.{decimals}f}") + star


def regime_section(name: str, run: Path) -> list[str]:
    probe = json.loads((HERE / name / "probe" / "probe.json").read_text())
    data = per_seed(run)
    (HERE / name / "per_seed.json").write_text(json.dumps(
        {m: (v if m == "Base" else {str(s): r for s, r in v.items()}) for m, v in data.items()}, indent=1,
        sort_keys=True) + "\n")
    table = build_table(data)
    methods = [m for m in METHODS if m in data]
    acc = [c.title for c in table.columns if c.group not in ("heldout", "_avg")]
    titles = acc + [t for t in METRICS if any(table.cell(m, t) for m in methods)]
    lines = [f"### Model-{name}: probe mean focus {probe['mean_focus']:.3f}, mean p {probe['mean_p']:.3f}, "
             f"verdict **{probe['regime']}**", "",
             "| metric | Base | " + " | ".join(LABELS[m] for m in methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]
    for t in titles:
        dec = _decimals(t)
        lines.append(f"| {t} | {_cell(table, 'Base', t, dec)} | "
                     + " | ".join(_cell(table, m, t, dec) for m in methods) + " |")
    if "nll" in methods:
        lines += ["", "Paired difference to NLL (method - NLL, mean ± 95% interval over seeds; * = outside the noise):",
                  "", "| metric | " + " | ".join(LABELS[m] for m in methods if m != "nll") + " |",
                  "|---|" + "---:|" * (len(methods) - 1)]
        for t in titles:
            dec = _decimals(t)
            lines.append(f"| {t} | " + " | ".join(_diff(table, m, t, dec) for m in methods if m != "nll") + " |")
    return lines + [""]


def main(run_root: str = "runs/regimes") -> None:
    root = Path(run_root)
    out = []
    for name in REGIMES:
        if (root / name / "eval").is_dir() and (HERE / name / "probe" / "probe.json").exists():
            out += regime_section(name, root / name)
    print("\n".join(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
