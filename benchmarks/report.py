"""Ratios, targets and the reports of the benchmark scripts, from their results JSON: the CSV and
markdown of ``fused_loss.py`` (:func:`write_reports`, and its ``--profile`` lines), the markdown of
``train_step.py`` (:func:`write_train_step`).

Nothing here measures: :func:`write_reports` turns a results dict (``command``, ``environment``,
``settings``, ``shapes``, ``objectives``, ``methods``, ``records``) into the JSON with a target
summary, one CSV row per case and a short markdown report: the command that re-measures it, one
line of environment, and per shape one table of each method's time and peak and the ratios that
have targets (each marked met or missed).

:func:`compare_reports` prints a run's ratios beside those of another results JSON (``make bench``
against the committed table).

Targets (measured side by side in one run; ``best fused`` is the faster of the engine's two
implementations where both ran, ``fused`` (eager gate step) and ``compiled``):

* CPU (issue 30): gate objectives' fused time <= 1.05x the floor, distribution objectives' <=
  1.25x (paired); fused peak <= 1.5x the budget ``dW + dh + one fp32 logits chunk``; at the
  SmolLM2 shape >= 2x faster and >= 8x less memory than the reference formulation.
* CUDA (issue 16): gate objectives <= 1.15x the floor, distribution objectives <= 1.6x; DEFT
  <= 1.10x Liger's NLL time; gate objectives' peak <= Liger's (same objective, else NLL); at the
  Qwen2.5-7B head with N=8192 >= 3x faster and >= 10x less memory than the reference.
* ``train_step.py`` (:data:`TRAIN_STEP_TARGETS`): a DeftSFT step with DEFT <= 1.05x TRL's NLL step time
  and <= 0.75x TRL's DFT peak; the fused DEFT step <= 1.05x the fused NLL step.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from pathlib import Path

MiB = float(1 << 20)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # deft from this checkout (imported where used: it loads torch)
IGNORED_SHARE = 0.1  # share of ignore-index positions in the inputs (fused_loss.make_inputs)
TITLES = {"tiny": "tiny sanity shape", "smollm2": "SmolLM2 head", "qwen1.5b": "Qwen2.5-1.5B head",
          "qwen7b": "Qwen2.5-7B head", "llama8b": "Llama-3.1-8B head"}
CSV_FIELDS = ["shape", "objective", "method", "status", "time_s", "time_min_s", "peak_bytes", "peak_mib",
              "base_bytes", "loss", "loss_tokens", "times_s", "warmup_times_s", "paired_floor_time_s",
              "paired_ratio", "paired_cpu_ratio", "wall_s", "load_before", "load_after", "note"]

# (name, ratio key, "<=" or ">=", bound, applies(row, shape) -> bool), per device
TARGETS = {
    "cpu": [
        ("gate <= 1.05x floor", "t_floor", "<=", 1.05, lambda r, s: r["gate"]),
        ("dist. <= 1.25x floor", "t_floor", "<=", 1.25, lambda r, s: not r["gate"]),
        ("fused mem <= 1.5x budget", "m_budget", "<=", 1.5, lambda r, s: True),
        ("ref >= 2x slower", "t_ref", ">=", 2.0, lambda r, s: s.get("ref_target")),
        ("ref >= 8x more mem", "m_ref", ">=", 8.0, lambda r, s: s.get("ref_target")),
    ],
    "cuda": [
        ("gate <= 1.15x floor", "t_floor", "<=", 1.15, lambda r, s: r["gate"]),
        ("dist. <= 1.6x floor", "t_floor", "<=", 1.6, lambda r, s: not r["gate"]),
        ("deft <= 1.10x liger nll", "t_liger_nll", "<=", 1.10, lambda r, s: r["objective"] == "deft"),
        ("mem <= liger", "m_liger", "<=", 1.0, lambda r, s: r["gate"]),
        ("ref >= 3x slower", "t_ref", ">=", 3.0, lambda r, s: s.get("ref_target")),
        ("ref >= 10x more mem", "m_ref", ">=", 10.0, lambda r, s: s.get("ref_target")),
    ],
}
RATIO_TITLES = {"t_floor": "fused / floor time", "t_floor_cpu": "fused / floor CPU time",
                "m_budget": "fused mem / budget", "t_ref": "ref / fused time", "t_ref_cpu": "ref / fused CPU time",
                "m_ref": "ref / fused mem",
                "t_liger_nll": "fused / liger nll time", "m_liger": "fused / liger mem"}


# ratios shown without a target: CPU seconds, which other processes' load barely moves
UNJUDGED = ("t_floor_cpu", "t_ref_cpu")


def _ok(rec):
    return rec is not None and rec.get("status") == "ok"


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def is_gate(objective: str) -> bool:
    """Whether ``objective`` (a spec) is a gate objective (``g = s (P - δ_y)``)."""
    import deft

    return deft.parse_objective(objective).kind == "gate"


def budget_bytes(shape: dict, itemsize: int, loss_tokens=None):
    """``(dW + dh + one fp32 logits chunk, chunk rows)`` in the fused loss's chunks."""
    from deft.fused import auto_chunk_size

    H, V, N = shape["H"], shape["V"], shape["N"]
    chunk = auto_chunk_size(loss_tokens or round(N * (1 - IGNORED_SHARE)), H, V)
    return V * H * 4 + N * H * itemsize + chunk * V * 4, chunk


def analyse_shape(shape: dict, records: list, objectives: list, device: str, itemsize: int) -> list[dict]:
    """One row per objective of ``shape``: each method's record, the ratios and the verdicts."""
    found = {}
    for rec in records:
        if rec["shape"] == shape["name"]:
            key = ("*", "floor") if rec["method"] == "floor" else (rec["objective"], rec["method"])
            found.setdefault(key, rec)
    floor = found.get(("*", "floor"))
    liger_nll = found.get(("nll", "liger"))
    rows = []
    for obj in objectives:
        recs = {m: found.get((obj, m)) for m in ("fused", "compiled", "plain", "reference", "liger")}
        if not any(recs.values()):
            continue
        best = best_fused(recs["fused"], recs["compiled"])
        bt = best["time_s"] if _ok(best) else None
        bm = best["peak_bytes"] if _ok(best) else None
        paired = best.get("paired_ratio") if _ok(best) else None
        liger = recs["liger"] if _ok(recs["liger"]) else liger_nll
        budget, chunk = budget_bytes(shape, itemsize, best.get("loss_tokens") if best else None)
        ratios = {
            "t_floor": paired if paired is not None else _ratio(bt, floor["time_s"] if _ok(floor) else None),
            "t_floor_cpu": best.get("paired_cpu_ratio") if _ok(best) else None,  # no target: the load's witness
            "m_budget": _ratio(bm, budget),
            "t_ref": _ratio(recs["reference"]["time_s"] if _ok(recs["reference"]) else None, bt),
            "t_ref_cpu": _ratio(_cpu(recs["reference"]), _cpu(best)),
            "m_ref": _ratio(recs["reference"]["peak_bytes"] if _ok(recs["reference"]) else None, bm),
            "t_liger_nll": _ratio(bt, liger_nll["time_s"] if _ok(liger_nll) else None),
            "m_liger": _ratio(bm, liger["peak_bytes"] if _ok(liger) else None),
        }
        row = dict(objective=obj, gate=is_gate(obj), records=recs, floor=floor, ratios=ratios,
                   budget=budget, chunk=chunk, best=best)
        row["verdicts"] = verdicts(row, shape, device)
        rows.append(row)
    return rows


def _cpu(rec):
    """Median CPU seconds of a case's timed iterations (CPU runs), or None."""
    return statistics.median(rec["cpu_times_s"]) if _ok(rec) and rec.get("cpu_times_s") else None


def best_fused(fused, compiled):
    """The faster of the engine's two implementations where both ran, else the one that ran."""
    if _ok(fused) and _ok(compiled):
        return compiled if compiled["time_s"] < fused["time_s"] else fused
    return compiled if _ok(compiled) else fused


def verdicts(row: dict, shape: dict, device: str) -> dict:
    """``{ratio key: (target name, met)}`` for the targets of ``device`` that apply to ``row``."""
    out = {}
    for name, key, op, bound, applies in TARGETS.get(device, []):
        value = row["ratios"].get(key)
        if value is None or not applies(row, shape):
            continue
        out[key] = (name, value <= bound if op == "<=" else value >= bound)
    return out


def _cell(rec) -> str:
    if rec is None:
        return "-"
    if rec.get("status") != "ok":
        return rec.get("status", "?")
    return f"{rec['time_s']:.3g} s / {rec['peak_bytes'] / MiB:.0f} MiB"


def markdown_table(shape: dict, rows: list, methods: list, device: str, itemsize: int) -> str:
    """One shape: every method's ``time / peak`` and the target ratios (a column only where
    some row of this shape has that target)."""
    H, V, N = shape["H"], shape["V"], shape["N"]
    keys = [k for k in RATIO_TITLES if any(k in r["verdicts"] for r in rows)
            or (k in UNJUDGED and any(r["ratios"][k] is not None for r in rows))]
    cols = [m for m in ("fused", "compiled", "plain", "reference", "floor", "liger") if m in methods]
    budget, chunk = rows[0]["budget"], rows[0]["chunk"]
    lines = [f"### {TITLES.get(shape['name'], shape['name'])}: H={H}, V={V}, N={N}", "",
             f"Chunk {chunk} rows; budget dW + dh + one fp32 logits chunk = {budget / MiB:.0f} MiB; full fp32 "
             f"logits {N * V * 4 / MiB:.0f} MiB; {shape['warmup']} warm-up + {shape['repeats']} timed iteration(s), "
             "median; cells are time / peak above the inputs.", "",
             "| objective | " + " | ".join(cols + [RATIO_TITLES[k] for k in keys]) + " |",
             "|---|" + "---:|" * (len(cols) + len(keys))]
    notes = []
    for r in rows:
        cells = [r["objective"] + ("" if r["gate"] else " (dist.)")]
        cells += [_cell(r["floor"] if m == "floor" else r["records"][m]) for m in cols]
        for k in keys:
            if k in r["verdicts"]:
                cells.append(f"{r['ratios'][k]:.2f}x {'met' if r['verdicts'][k][1] else '**missed**'}")
            else:
                cells.append("-" if r["ratios"][k] is None else f"{r['ratios'][k]:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
        for m in cols:
            rec = r["floor"] if m == "floor" else r["records"][m]
            if rec and rec.get("status") not in ("ok", "n/a", None) and rec.get("note") and m != "floor":
                notes.append(f"- `{r['objective']}` / {m}: {rec['status']}: {rec['note']}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def settings_of(report: dict) -> tuple:
    """``(device, dtype, itemsize)`` of a results dict (older files lack some settings)."""
    settings = report.get("settings", {})
    device = settings.get("device", report["environment"].get("device", "cpu"))
    dtype = settings.get("dtype", "fp32" if device == "cpu" else "bf16")
    return device, dtype, 4 if dtype == "fp32" else 2


def load_note(report: dict) -> str:
    """`` 1-minute load average ...`` over the cases' readings (before and after each), or ``""``."""
    loads = [r[k] for r in report["records"] for k in ("load_before", "load_after") if r.get(k) is not None]
    if not loads:
        return ""
    cores = report["environment"].get("cpu_cores")
    return (f" Other load during the run: 1-minute load average {min(loads):.1f}-{max(loads):.1f} on {cores} cores "
            "(read before and after each case); the CPU-time ratio (this process's CPU seconds, paired like the "
            "time) moves far less with it than the wall time.")


def render(report: dict) -> tuple[str, list]:
    """``(markdown, summary)`` of a results dict; ``summary`` lists every target verdict."""
    device, dtype, itemsize = settings_of(report)
    env = report["environment"]
    md = [f"# Fused loss benchmark ({device})", "", "Re-measure with:", "", "```bash", report["command"], "```", ""]
    if report.get("updates"):
        md += [f"({len(report['updates'])} re-measurement(s) of some cases since, listed in the results JSON.)", ""]
    where = f"GPU {env['gpu']}" if env.get("gpu") else f"CPU {env['cpu']} ({env['cpu_cores']} cores)"
    md += [f"{env['date'][:10]}, {where}, torch {env['torch']}, {dtype} inputs, "
           f"{report.get('settings', {}).get('threads', env.get('torch_threads'))} threads; "
           + ("the cases of a shape in one interpreter; " if report.get("settings", {}).get("group") == "shape"
              else "one interpreter per case; ")
           + f"peak = {'max_memory_allocated' if device == 'cuda' else 'peak RSS'} above the inputs. `floor` = the "
           "three matrix products alone (for `kd` also the teacher's logits, a fourth product it cannot avoid). "
           "In the ratios, fused = the faster of `fused` (eager gate step) and "
           "`compiled` where both ran; fused / floor time is paired within each case." + load_note(report), ""]
    md += [f"- {note}" for note in report.get("notes", [])] + ([""] if report.get("notes") else [])
    summary = []
    for shape in report["shapes"]:
        objectives = [o for o in report["objectives"]]
        rows = analyse_shape(shape, report["records"], objectives, device, itemsize)
        if not rows:
            continue
        md.append(markdown_table(shape, rows, report["methods"], device, itemsize))
        for r in rows:
            summary += [dict(shape=shape["name"], objective=r["objective"], target=name, met=met)
                        for name, met in r["verdicts"].values()]
    met = sum(s["met"] for s in summary)
    md.append(f"Targets met: {met} of {len(summary)}.")
    return "\n".join(md) + "\n", summary


def _ratio_rows(report: dict) -> dict:
    """``{(shape, objective): (fused / floor, its CPU time, mem / budget, ref / fused time)}`` of a results dict."""
    device, _, itemsize = settings_of(report)
    out = {}
    for shape in report["shapes"]:
        for r in analyse_shape(shape, report["records"], report["objectives"], device, itemsize):
            out[(shape["name"], r["objective"])] = tuple(r["ratios"][k] for k in COMPARED)
    return out


COMPARED = ("t_floor", "t_floor_cpu", "m_budget", "t_ref", "t_ref_cpu")


def compare_reports(new: dict, old: dict, old_name: str = "committed", markdown: bool = False) -> str:
    """This run's ratios beside another results dict's, per shape and objective (``-`` where that
    one has no such case): the regression check of ``make bench``, as text or (``markdown``) a
    table. Only ratios are compared: each was measured side by side within its own run."""
    mine, theirs = _ratio_rows(new), _ratio_rows(old)
    titles = ["fused / floor", "fused / floor CPU", "mem / budget", "ref / fused time", "ref / fused CPU"]
    rows = [(shape, objective, [f"{fx(a, '{:.2f}x')} / {fx(b, '{:.2f}x')}"
                                for a, b in zip(values, theirs.get((shape, objective), (None,) * len(COMPARED)))])
            for (shape, objective), values in mine.items()]
    if markdown:
        lines = ["| shape | objective | " + " | ".join(f"{t}: now / {old_name}" for t in titles) + " |",
                 "|---|---|" + "---:|" * len(titles)]
        return "\n".join(lines + [f"| {s} | {o} | " + " | ".join(cells) + " |" for s, o, cells in rows])
    env = old.get("environment", {})
    lines = [f"ratios now / in {old_name} ({env.get('date', '?')[:10]}, {env.get('cpu', '?')}):",
             f"{'shape':>10} {'objective':>16} " + " ".join(f"{t:>17}" for t in titles)]
    return "\n".join(lines + [f"{s:>10} {o:>16} " + " ".join(f"{c:>17}" for c in cells) for s, o, cells in rows])


def csv_text(records: list) -> str:
    """One CSV row per case (times joined by spaces, the peak also in MiB)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in records:
        row = dict(rec)
        if row.get("peak_bytes") is not None:
            row["peak_mib"] = round(row["peak_bytes"] / MiB, 1)
        for key in ("times_s", "warmup_times_s"):
            if key in row:
                row[key] = " ".join(f"{t:.4f}" for t in row[key])
        writer.writerow(row)
    return buf.getvalue()


def write_reports(report: dict, out: Path, csv_path: Path, md_path: Path) -> list:
    """Write the JSON (with its target summary), the CSV and the markdown; return the summary."""
    from deft.io import atomic_write_text

    text, summary = render(report)
    report["summary"] = summary
    atomic_write_text(out, json.dumps(report, indent=1))
    atomic_write_text(csv_path, csv_text(report["records"]))
    atomic_write_text(md_path, text)
    return summary


# ------------------------------------------------------------------ train_step.py

# train_step.py: (case, baseline, "time" | "peak", at most), the ratios with targets
TRAIN_STEP_TARGETS = [("deftsft/deft", "trl/nll", "time", 1.05), ("deftsft/deft", "trl/dft", "peak", 0.75),
           ("fused/deft", "fused/nll", "time", 1.05)]


def train_step_summary(report: dict) -> dict:
    """A ``train_step.py`` results dict, per case: median over rounds of the median step, max peak; paired
    ratios from the interleaved run; the targets."""
    cases = {}
    for key in report["cases"]:
        ok = [r for r in report["records"] if r["case"] == key and r["status"] == "ok"]
        bad = [r for r in report["records"] if r["case"] == key and r["status"] != "ok"]
        cases[key] = {"time_s": statistics.median(r["time_s"] for r in ok),
                      "peak_bytes": max(r["peak_bytes"] for r in ok),
                      "loss_first": ok[0]["loss_first"]} if ok else {"status": bad[-1]["status"] if bad else "n/a",
                                                                      "note": bad[-1].get("note", "") if bad else ""}
    inter = (report.get("interleaved") or {}).get("steps")

    def ratio(a, b, what):
        if what == "time" and inter and a in inter and b in inter:
            return statistics.median(x / y for x, y in zip(inter[a], inter[b])), "paired"
        ca, cb = cases.get(a, {}), cases.get(b, {})
        field = "time_s" if what == "time" else "peak_bytes"
        if field not in ca or field not in cb:
            return None, "-"
        return ca[field] / cb[field], "medians" if what == "time" else "peaks"

    targets = []
    for a, b, what, limit in TRAIN_STEP_TARGETS:
        value, how = ratio(a, b, what)
        targets.append({"case": a, "baseline": b, "what": what, "limit": limit, "value": value, "how": how,
                        "met": None if value is None else value <= limit})
    for key, c in cases.items():
        c["time_vs_trl_nll"] = ratio(key, "trl/nll", "time")[0]
        c["peak_vs_trl_dft"] = ratio(key, "trl/dft", "peak")[0]
        if inter and key in inter:
            c["interleaved_s"] = statistics.median(inter[key])
    return {"cases": cases, "targets": targets}


def fx(x, fmt="{:.2f}"):
    """``x`` formatted, ``-`` for None."""
    return "-" if x is None else fmt.format(x)


def render_train_step(report: dict) -> str:
    """The markdown report of a ``train_step.py`` results dict."""
    s, env, b = train_step_summary(report), report["environment"], report["batch"]
    tokens = b["rows"] * b["seq_len"]
    loads = [x for r in report["records"] for x in r.get("load", [])]
    md = [f"# Training step benchmark ({env['device']})", "", "```bash", report["command"], "```", "",
          f"{env['date']}; torch {env['torch']}, transformers {env['transformers']}, TRL {env['trl']}, "
          f"peft {env['peft']}; {env['cpu']}, {env['cpu_cores']} cores, {env['torch_threads']} torch threads, "
          f"{env['mem_total_gib']} GiB. Model `{report['model']}` fp32; batch {b['rows']} x {b['seq_len']} tokens "
          f"(FigFont, sha256 {b['sha256_16']}), {b['loss_tokens']} loss tokens; {report['warmup']} warm-up + "
          f"{report['repeats']} timed steps per case, {report['rounds']} round(s)"
          + ("; every case in one process (peaks not isolated)" if report.get("group") == "all" else "") + "; "
          + (f"load average {min(loads):.1f}-{max(loads):.1f}." if loads else ""), "",
          "| case | step s | tokens/s | interleaved step s | / trl/nll time | peak MiB | / trl/dft peak "
          "| loss, step 1 |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, c in s["cases"].items():
        if "time_s" not in c:
            md.append(f"| {key} | {c['status']}: {c['note']} |" + " - |" * 6)
            continue
        md.append(f"| {key} | {c['time_s']:.2f} | {tokens / c['time_s']:.0f} | {fx(c.get('interleaved_s'))} | "
                  f"{fx(c['time_vs_trl_nll'])} | {c['peak_bytes'] / MiB:.0f} | {fx(c['peak_vs_trl_dft'])} | "
                  + ("-" if key == "decoder/-" else f"{c['loss_first']:.5f}") + " |")
    md += ["", "| target | value | from | met |", "|---|---:|---|---|"]
    for t in s["targets"]:
        mark = "n/a" if t["met"] is None else ("met" if t["met"] else "**missed**")
        md.append(f"| {t['case']} {t['what']} <= {t['limit']:.2f} x {t['baseline']} | {fx(t['value'], '{:.3f}')} | "
                  f"{t['how']} | {mark} |")
    notes = report.get("notes") or []
    return "\n".join(md + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def write_train_step(report: dict, out: Path, md_path: Path) -> str:
    """Write a ``train_step.py`` results dict and its markdown report; return the markdown."""
    from deft.io import atomic_write_text

    text = render_train_step(report)
    atomic_write_text(out, json.dumps(report, indent=1))
    atomic_write_text(md_path, text)
    return text


def format_profile(objective: str, shape: str, prof: dict) -> str:
    """``fused_loss.py --profile``: wall time split into matrix products and the rest, top ops."""
    lines = [f"fused {objective} on {shape}: wall {prof['wall_s']:.2f} s = products "
             f"{prof['matmul_s']:.2f} s + other {prof['other_s']:.2f} s (profiled self time)"]
    lines += [f"  {row['op']:<40} {row['calls']:>6}  {row['self_s']:8.3f} s" for row in prof["top"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python benchmarks/report.py RESULTS.json [--markdown MD] [--csv CSV]``: re-render."""
    import argparse

    ap = argparse.ArgumentParser(description="Rewrite the CSV and markdown of a fused_loss.py results JSON.")
    ap.add_argument("results")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    src = Path(args.results)
    report = json.loads(src.read_text())
    summary = write_reports(report, src, Path(args.csv or src.with_suffix(".csv")),
                            Path(args.markdown or src.with_suffix(".md")))
    print(f"targets met: {sum(s['met'] for s in summary)} of {len(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
