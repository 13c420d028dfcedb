"""The main job of ``make demo``: a story in four steps on the embedded model (SmolLM2-135M-Instruct).

1. **Probe** the base model on FigFont puzzles (reasoning-gym ``figlet_font``, the paper's
   model-weak regime): mean target probability, DEFT focus, regime verdict and recommendation.
2. **Fine-tune** each objective (default ``nll``, ``p``, ``deft``) on the same puzzles, seed and
   hyper-parameters (``deft compare``), printing the token statistics of every step.
3. **Evaluate**: held-out NLL and mean target probability on puzzles not trained on (learning),
   on the answers' content tokens first, the end-of-turn token apart (a short answer's end-of-turn
   token is about a third of its tokens and is learned first, :mod:`deft.eval.heldout`), drift KL
   and retained NLL on the base model's answers to general prompts (forgetting), and greedy exact
   match / Jaro-Winkler on held-out puzzles (the paper's Table 3 metrics).
4. **Report**: the table, the training curves (Figure 5 view), the gate curves (Eq. 7) and an
   HTML page (``deft plot``) in the output folder that leads with the same table, figures inlined.

The defaults (8 steps of 6 puzzles at learning rate 2e-4) are chosen so that the tuned models'
held-out NLL drops well below the base model's and ``-p``'s gate (``p``, near 0 for unknown tokens
in this regime) visibly slows its learning compared with NLL and DEFT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..config import option

__all__ = ["DemoConfig", "demo"]


@dataclass
class DemoConfig:
    """Every option of ``deft demo`` (the keywords of :func:`demo`, ``n`` standing for ``eval_size``)."""

    COMMAND = "demo"
    out: str = option("runs/demo", "output folder", aliases=("output_dir",))
    model: str = option("smollm2-135m", "model to fine-tune (default: the embedded smollm2-135m)")
    objectives: list[str] = option(["nll", "p", "deft"], "comma-separated objective specs", split="specs")
    steps: int = option(8, "optimizer steps per objective", aliases=("max_steps",), check="positive")
    batch_size: int = option(6, "puzzles per step", check="positive")
    lr: float = option(2e-4, "peak learning rate", check="positive")
    n: int = option(16, "held-out puzzles answered greedily for exact match / Jaro-Winkler (0 skips)",
                    aliases=("eval_size",), check="non_negative")
    heldout_size: int = option(24, "held-out puzzles for the teacher-forced held-out NLL", check="positive")
    seed: int = option(0, "seed of data, training and evaluation")


def _stats_table(name: str, rows: list[dict]) -> str:
    head = f"{'step':>4} {'loss':>8} {'mean_p':>8} {'focus':>7} {'gate':>6} {'entropy':>8} {'p<1e-3':>7} {'p>0.5':>6}"
    lines = [f"\n{name}: token statistics per optimizer step", head]
    for r in rows:
        focus = f"{r['mean_focus']:7.3f}" if "mean_focus" in r else f"{'-':>7}"
        lines.append(f"{r['step']:>4} {r['loss']:8.4f} {r['mean_p']:8.4f} {focus} {r['mean_gate']:6.3f} "
                     f"{r['mean_entropy']:8.3f} {r['frac_p_below_1e-3']:7.3f} {r['frac_p_above_0.5']:6.3f}")
    return "\n".join(lines)


def _figfont(n: int, seed: int, split: str, path: Path) -> Path:
    from ..data.readers import write_jsonl
    from ..data.sources import source_records

    records = []
    for where, rec in source_records("figfont", n=n, seed=seed, split=split):
        if isinstance(rec, Exception):
            raise ValueError(f"{where}: {rec}")
        records.append(rec)
    write_jsonl(records, path)
    return path


def demo(*, out: str = "runs/demo", model: str = "smollm2-135m", objectives=("nll", "p", "deft"), steps: int = 8,
         batch_size: int = 6, lr: float = 2e-4, eval_size: int = 16, heldout_size: int = 24, seed: int = 0) -> str:
    """Run the four steps of the module docstring; returns the results table (markdown)."""
    from transformers.utils import logging as hf_logging

    from ..analysis.probe import format_summary
    from ..analysis.report import build_report
    from ..analysis.tables import read_tables
    from ..analysis.training_curves import read_metrics
    from ..config import load_config
    from .compare import CompareConfig, compare, run_name
    from .probe import ProbeConfig, probe

    hf_logging.disable_progress_bar()
    root = Path(out)
    start = time.perf_counter()
    specs = list(objectives)
    train = _figfont(steps * batch_size, seed, "train", root / "data" / "figfont_train.jsonl")
    heldout = _figfont(heldout_size, seed, "test", root / "data" / "figfont_heldout.jsonl")
    print(f"[1/4] probe: how well does {model} already predict FigFont answers? ({train})", flush=True)
    summary = probe(load_config(ProbeConfig, None, dict(model=model, data=str(train), n=min(32, steps * batch_size),
                                                        gates=["deft"], out=str(root / "probe"), progress=False)))
    print(format_summary(summary))
    print(f"\n[2/4] fine-tune {', '.join(specs)}: {steps} steps of {batch_size} puzzles, lr {lr:g}, seed {seed}",
          flush=True)
    cfg = load_config(CompareConfig, None, dict(
        model=model, data=str(train), objectives=specs, heldout=str(heldout), out=str(root),
        benchmark="figfont" if eval_size else None, n=eval_size or None, max_new_tokens=12))
    table = compare(cfg, dict(max_steps=steps, batch_size=batch_size, lr=lr, seed=seed, max_length=512),
                    log=lambda msg: print(f"  {msg}", flush=True))
    for spec in specs:
        print(_stats_table(spec, read_metrics(root / "runs" / run_name(spec))))
    print(f"\n[3/4] results: learning on {heldout_size} held-out puzzles, forgetting on general prompts"
          + (f", greedy answers to {eval_size} puzzles" if eval_size else "") + "\n")
    print(table)
    print("[4/4] plots and report", flush=True)
    saved = read_tables(root)  # the table printed above, led by the report page
    build_report(root / "report", runs={s: str(root / "runs" / run_name(s)) for s in specs},
                 probes={"base": str(root / "probe")}, before=None, after=None, objectives=specs,
                 curve_objectives=None, threshold=0.01, max_points=20000, results=saved["results"],
                 results_title=saved["title"], reference=saved["reference"], paired=saved["paired"])
    print(f"wrote {root / 'results.md'}, {root / 'training_curves.png'}, {root / 'gate_curves.png'} and "
          f"{root / 'report' / 'index.html'} in {time.perf_counter() - start:.0f} s")
    return table
