"""``deft demo``: the main job of ``make demo``.

A real fine-tune of the embedded model (SmolLM2-135M-Instruct) in the paper's model-weak regime:
FigFont puzzles from reasoning-gym, a small ``deft compare`` of NLL and DEFT on the same data,
seed and hyper-parameters, evaluated with greedy exact match and Jaro-Winkler on held-out puzzles
(the paper's Table 3 metrics). Prints the token statistics of every step and writes the training
curves (the paper's Figure 5 view) and the gate curves of every objective (Eq. 7).
"""

from __future__ import annotations


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


def run(args) -> int:
    from ..recipes.demo import demo

    demo(out=args.out, model=args.model, objectives=[s.strip() for s in args.objectives.split(",") if s.strip()],
         steps=args.steps, batch_size=args.batch_size, lr=args.lr, eval_size=args.eval_size, seed=args.seed)
    return 0
