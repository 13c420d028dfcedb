"""The main job of ``make demo``: a real fine-tune of the embedded model, evaluated, with plots."""

from __future__ import annotations

import time
from pathlib import Path

from ..analysis.curves import all_curves, plot_curves, write_curves_csv
from ..analysis.training_curves import read_metrics
from .compare import compare, run_name

__all__ = ["demo"]


def _stats_table(name: str, rows: list[dict]) -> str:
    head = f"{'step':>4} {'loss':>8} {'mean_p':>8} {'focus':>7} {'gate':>6} {'entropy':>8} {'p<1e-3':>7} {'p>0.5':>6} {'tok/s':>7}"
    lines = [f"\n{name}: token statistics per optimizer step", head]
    for r in rows:
        focus = f"{r['mean_focus']:7.3f}" if "mean_focus" in r else f"{'-':>7}"
        lines.append(f"{r['step']:>4} {r['loss']:8.4f} {r['mean_p']:8.4f} {focus} {r['mean_gate']:6.3f} "
                     f"{r['mean_entropy']:8.3f} {r['frac_p_below_1e-3']:7.3f} {r['frac_p_above_0.5']:6.3f} "
                     f"{r['tokens_per_s']:7.0f}")
    return "\n".join(lines)


def demo(*, out: str = "runs/demo", model: str = "smollm2-135m", objectives=("nll", "deft"), steps: int = 12,
         batch_size: int = 8, lr: float = 5e-5, eval_size: int = 32, seed: int = 0) -> str:
    """The main job of ``make demo``; returns the results table."""
    from transformers.utils import logging as hf_logging

    from ..data.readers import write_jsonl
    from ..data.sources import source_records

    hf_logging.disable_progress_bar()
    out_arg = out
    out = Path(out_arg)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs = list(objectives)

    curves = all_curves()
    write_curves_csv(curves, out / "gate_curves.csv")
    plot_curves(curves, out / "gate_curves_all.png")

    n_train = steps * batch_size
    data = out / "data" / "figfont_train.jsonl"
    records = []
    for where, rec in source_records("figfont", n=n_train, seed=seed, split="train"):
        if isinstance(rec, Exception):
            raise ValueError(f"{where}: {rec}")
        records.append(rec)
    write_jsonl(records, data)
    print(f"data: {n_train} FigFont puzzles (reasoning-gym figlet_font, words of 2-5 letters) -> {data}")
    print(f"fine-tuning {model} with {', '.join(specs)}: {steps} steps of {batch_size} puzzles each")

    table = compare(
        model=model, train_data=str(data), objectives=specs,
        benchmarks=["figfont"] if eval_size else [], out_dir=str(out),
        train_options=dict(max_steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                           max_length=512),
        eval_options=dict(size=eval_size, max_new_tokens=12, seed=seed),
        log=lambda msg: print(f"  {msg}", flush=True),
    )
    for spec in specs:
        print(_stats_table(spec, read_metrics(out / "runs" / run_name(spec))))
    if eval_size:
        print(f"\nheld-out FigFont puzzles ({eval_size}), greedy decoding, in percent:\n")
        print(table)
    print(f"wrote {out / 'results.md'}, {out / 'training_curves.png'}, {out / 'gate_curves.png'} "
          f"in {time.perf_counter() - start:.0f} s")
    return table
