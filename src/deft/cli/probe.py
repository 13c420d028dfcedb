"""``deft probe``: the model's prior on the response tokens of a data file, and its regime."""

from __future__ import annotations

import json

from ..analysis.probe import CONFLICT_ENTROPY, CONFLICT_P, STRONG_FOCUS, WEAK_FOCUS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "probe", help="one forward pass, no training: mean p, DEFT focus, confident conflicts, regime verdict",
        description="Run the model once over N records of a data file (response tokens only, as 'deft train' "
                    "sees them) and report its prior: mean target probability p, mean DEFT focus (sum of squared "
                    "probabilities, paper Eq. 20), the Cayley focus of the mean p (Eq. 17), a histogram of p, "
                    "the mean entropy, the share of confident conflicts and a regime verdict with recommended "
                    "objectives.",
        epilog=f"Regimes: model-strong if mean focus >= {STRONG_FOCUS:g}, model-weak if < {WEAK_FOCUS:g}, else "
               "intermediate (paper Figure 5: the focus starts near 0.65 model-strong and 0.05 model-weak); one "
               "level lower when mean p is under half the mean focus. Confident conflicts: "
               f"p < {CONFLICT_P:g} and entropy < {CONFLICT_ENTROPY:g} nat. With --out, DIR/probe.json and "
               "DIR/token_stats.npz (per-token statistics for 'deft plot') are written.",
    )
    p.add_argument("--model", default="smollm2-135m",
                   help="model: 'smollm2-135m' (embedded, default), a model directory (e.g. a run's final/), "
                        "a .gguf file or an HF hub id")
    p.add_argument("--data", required=True, help="record file written by 'deft data' (.jsonl/.json/.parquet)")
    p.add_argument("--n", type=int, default=256, help="number of records to sample (default 256; 0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the record sample (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="records per forward pass (default 8)")
    p.add_argument("--max-length", type=int, default=1024, help="maximum tokens per record, as in training (default 1024)")
    p.add_argument("--template", default="auto",
                   help="prompt format: auto (the tokenizer's chat template, else plain), chat, or a plain template name")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="model weights dtype (default float32; the loss is computed in fp32 either way)")
    p.add_argument("--gates", default="deft,eaft",
                   help="comma-separated objectives whose per-token gate is stored for the gradient-landscape "
                        "plot (one extra LM-head pass each; default deft,eaft; 'none' for none)")
    p.add_argument("--out", default=None, help="directory for probe.json and token_stats.npz (default: print only)")
    p.add_argument("--json", action="store_true", help="print the probe.json content instead of the text summary")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..analysis.probe import format_summary
    from ..recipes.probe import probe

    if args.n < 0:
        raise ValueError("--n must be >= 0 (0 = all records)")
    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    gates = [] if args.gates.strip().lower() in ("", "none") else [g.strip() for g in args.gates.split(",") if g.strip()]
    summary = probe(args.model, args.data, n=args.n or None, batch_size=args.batch_size, max_length=args.max_length,
                    template=args.template, seed=args.seed, device=args.device, dtype=getattr(torch, args.dtype),
                    gates=gates, out=args.out)
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    if args.out:
        print(f"wrote {args.out}/probe.json and {args.out}/token_stats.npz")
    return 0
