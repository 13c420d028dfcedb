"""``deft demo``: the main job of ``make demo``.

A real fine-tune of the embedded model (SmolLM2-135M-Instruct) in the paper's model-weak regime:
FigFont puzzles from reasoning-gym, trained with NLL and with DEFT on the same data, seed and
hyper-parameters, then evaluated (greedy exact match and Jaro-Winkler on held-out puzzles, as in
the paper's Table 3). Prints the token statistics of every step and writes the training curves
(the paper's Figure 5 view) and the gate curves of every objective (Eq. 7).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..analysis.curves import all_curves, plot_curves, write_curves_csv
from ..analysis.training_curves import plot_training_curves, read_metrics


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job: fine-tune the embedded model with NLL and DEFT on FigFont and compare",
        description="Fine-tune the embedded SmolLM2-135M-Instruct on FigFont puzzles with each objective, print "
                    "the per-step token statistics, evaluate exact match / Jaro-Winkler on held-out puzzles and "
                    "write plots. Runs offline on a laptop CPU.",
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


def _evaluate(model: str, out: Path, size: int, seed: int) -> dict:
    from ..eval.runner import evaluate

    result = evaluate(model, ["figfont"], k=1, temperature=0.0, max_new_tokens=12, size=size, seed=seed,
                      out_dir=str(out), progress=False, print_table=False)
    return result["figfont"]


def run(args) -> int:
    from ..data.sources import source_records
    from ..data.readers import write_jsonl
    from ..train import load_config, train

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs = [s.strip() for s in args.objectives.split(",") if s.strip()]

    curves = all_curves()
    write_curves_csv(curves, out / "gate_curves.csv")
    plot_curves(curves, out / "gate_curves.png")

    n_train = args.steps * args.batch_size
    data = out / "data" / "figfont_train.jsonl"
    records = []
    for where, rec in source_records("figfont", n=n_train, seed=args.seed, split="train"):
        if isinstance(rec, Exception):
            raise ValueError(f"{where}: {rec}")
        records.append(rec)
    write_jsonl(records, data)
    print(f"data: {n_train} FigFont puzzles (reasoning-gym figlet_font, words of 2-5 letters) -> {data}")

    runs, results = {}, {}
    if args.eval_size:
        print(f"\nevaluating the base model on {args.eval_size} held-out puzzles ...")
        results["base"] = _evaluate(args.model, out / "eval" / "base", args.eval_size, args.seed)
    for spec in specs:
        name = spec.replace(":", "_").replace(",", "_").replace("=", "")
        run_dir = out / name
        cfg = load_config(None, dict(model=args.model, data=str(data), objective=spec, output_dir=str(run_dir),
                                     max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                     max_length=512, progress=False))
        print(f"\ntraining {args.model} with '{spec}' for {args.steps} steps of {args.batch_size} puzzles ...")
        train(cfg, log=lambda *_: None)
        runs[spec] = run_dir
        print(_stats_table(spec, read_metrics(run_dir)))
        if args.eval_size:
            results[spec] = _evaluate(str(run_dir / "final"), out / "eval" / name, args.eval_size, args.seed)

    plot_training_curves(runs, out / "training_curves.png", title="FigFont (model-weak regime): token statistics")
    lines = ["", f"{'run':<12}{'first mean_p':>13}{'last mean_p':>12}{'last focus':>11}{'exact':>8}{'jaro-winkler':>14}"]
    for name in ["base", *specs]:
        res = results.get(name, {})
        rows = read_metrics(runs[name]) if name in runs else []
        first = f"{rows[0]['mean_p']:13.4f}" if rows else f"{'-':>13}"
        last = f"{rows[-1]['mean_p']:12.4f}" if rows else f"{'-':>12}"
        focus = f"{rows[-1]['mean_focus']:11.3f}" if rows and "mean_focus" in rows[-1] else f"{'-':>11}"
        exact = f"{res['exact']:8.3f}" if "exact" in res else f"{'-':>8}"
        jw = f"{res['jaro_winkler']:14.3f}" if "jaro_winkler" in res else f"{'-':>14}"
        lines.append(f"{name:<12}{first}{last}{focus}{exact}{jw}")
    summary = "\n".join(lines)
    print(summary)
    (out / "summary.txt").write_text(summary.strip() + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out / 'training_curves.png'}, {out / 'gate_curves.png'}, {out / 'summary.txt'} "
          f"in {time.perf_counter() - start:.0f} s")
    return 0
