"""``deft demo``: the main job of ``make demo``.

A real fine-tune of the embedded model (SmolLM2-135M-Instruct) in the paper's model-weak regime:
FigFont puzzles from reasoning-gym, a small ``deft compare`` of NLL and DEFT on the same data,
seed and hyper-parameters, evaluated with greedy exact match and Jaro-Winkler on held-out puzzles
(the paper's Table 3 metrics). Prints the token statistics of every step and writes the training
curves (the paper's Figure 5 view) and the gate curves of every objective (Eq. 7).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..analysis.compare import compare, run_name
from ..analysis.curves import all_curves, plot_curves, write_curves_csv
from ..analysis.training_curves import read_metrics


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job: fine-tune the embedded model with NLL and DEFT on FigFont and compare",
        description="Fine-tune the embedded SmolLM2-135M-Instruct on FigFont puzzles with each objective, print "
                    "the per-step token statistics, evaluate exact match / Jaro-Winkler on held-out puzzles and "
                    "write a results table and plots. Runs offline on a laptop CPU.",
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--model", default="smollm2-135m", help="model to fine-tune (default: the embedded smollm2-135m)")
    p.add_argument("--objectives", default="nll,deft", help="comma-separated objective specs (default nll,deft)")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per objective (default 12)")
    p.add_argument("--batch-size", type=int, default=8, help="puzzles per step (default 8)")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5, the paper's)")
    p.add_argument("--eval-size", type=int, default=32, help="held-out puzzles to evaluate (0 skips; default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, training and evaluation (default 0)")
    p.set_defaults(func=run)


def _stats_table(name: str, rows: list[dict]) -> str:
    head = f"{'step':>4} {'loss':>8} {'mean_p':>8} {'focus':>7} {'gate':>6} {'entropy':>8} {'p<1e-3':>7} {'p>0.5':>6} {'tok/s':>7}"
    lines = [f"\n{name}: token statistics per optimizer step", head]
    for r in rows:
        focus = f"{r['mean_focus']:7.3f}" if "mean_focus" in r else f"{'-':>7}"
        lines.append(f"{r['step']:>4} {r['loss']:8.4f} {r['mean_p']:8.4f} {focus} {r['mean_gate']:6.3f} "
                     f"{r['mean_entropy']:8.3f} {r['frac_p_below_1e-3']:7.3f} {r['frac_p_above_0.5']:6.3f} "
                     f"{r['tokens_per_s']:7.0f}")
    return "\n".join(lines)


def run(args) -> int:
    from transformers.utils import logging as hf_logging

    from ..data.readers import write_jsonl
    from ..data.sources import source_records

    hf_logging.disable_progress_bar()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs = [s.strip() for s in args.objectives.split(",") if s.strip()]

    curves = all_curves()
    write_curves_csv(curves, out / "gate_curves.csv")
    plot_curves(curves, out / "gate_curves_all.png")

    n_train = args.steps * args.batch_size
    data = out / "data" / "figfont_train.jsonl"
    records = []
    for where, rec in source_records("figfont", n=n_train, seed=args.seed, split="train"):
        if isinstance(rec, Exception):
            raise ValueError(f"{where}: {rec}")
        records.append(rec)
    write_jsonl(records, data)
    print(f"data: {n_train} FigFont puzzles (reasoning-gym figlet_font, words of 2-5 letters) -> {data}")
    print(f"fine-tuning {args.model} with {', '.join(specs)}: {args.steps} steps of {args.batch_size} puzzles each")

    table = compare(
        model=args.model, train_data=str(data), objectives=specs,
        benchmarks=["figfont"] if args.eval_size else [], out_dir=str(out),
        train_options=dict(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           max_length=512),
        eval_options=dict(size=args.eval_size, max_new_tokens=12, seed=args.seed),
        log=lambda msg: print(f"  {msg}", flush=True),
    )
    for spec in specs:
        print(_stats_table(spec, read_metrics(out / "runs" / run_name(spec))))
    if args.eval_size:
        print(f"\nheld-out FigFont puzzles ({args.eval_size}), greedy decoding, in percent:\n")
        print(table)
    print(f"wrote {out / 'results.md'}, {out / 'training_curves.png'}, {out / 'gate_curves.png'} "
          f"in {time.perf_counter() - start:.0f} s")
    return 0
