"""Build the model-strong set of the regime replication: records whose responses are the embedded
model's own greedy answers that are **complete and correct**, so the base model already predicts
the targets well and the targets are right (the paper's model-strong regime: the prior agrees with
the data).

Prompts: reasoning-gym ``basic_arithmetic`` and ``letter_counting`` problems (``deft data``,
seeded, the two tasks taken in turn), answered greedily by the base model with at most
``--max-new-tokens`` (default 256) new tokens. An answer is kept only when generation stopped on
its own (end-of-turn / EOS before the cap) and the task's own verifier
(:func:`deft.eval.self_answers.rg_record_score`) scores it 1; cut, empty and wrong answers are
counted and dropped (:func:`deft.eval.self_answers.self_answer_set`). Problems are drawn until N
records are kept or ``--max-draw`` problems (default 16 N) were answered; the script says how many
were kept. The training and held-out files use disjoint seeds (0 and 1) and the ``train`` /
``test`` splits.

Writes ``OUT.jsonl`` (atomically) and beside it ``OUT.meta.json``: the counts (drawn, cut, empty,
wrong, correct, kept, per task too) and the settings.

``--every-answer`` rebuilds the set of the committed replication (``run.sh``) instead: the first
N/2 problems of each task, every non-empty greedy answer kept whether cut or wrong, at
``--max-new-tokens`` (64 there). Its flaws are why the default rule exists (see README.md, "What
this replication cannot show").

Usage: python docs/results/regimes/strong_set.py MODEL N SPLIT SEED OUT.jsonl
       [--max-new-tokens 256] [--max-draw M] [--batch-size 8] [--every-answer]
"""

from __future__ import annotations

import argparse
from itertools import chain, zip_longest
from pathlib import Path

TASKS = ("rg:basic_arithmetic", "rg:letter_counting")
MAX_NEW_TOKENS = 256


def _args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="the model-strong set: the model's own complete and correct answers")
    ap.add_argument("model", help="model to answer (e.g. smollm2-135m)")
    ap.add_argument("n", type=int, help="records to keep")
    ap.add_argument("split", choices=("train", "test"), help="reasoning-gym split of the prompts")
    ap.add_argument("seed", type=int, help="seed of the prompts")
    ap.add_argument("out", help="output records (.jsonl); OUT.meta.json is written beside it")
    ap.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS,
                    help="generation cap; an answer that reaches it is dropped as cut")
    ap.add_argument("--max-draw", type=int, default=None, help="most problems to answer (default 16 N)")
    ap.add_argument("--batch-size", type=int, default=8, help="prompts generated together")
    ap.add_argument("--every-answer", action="store_true",
                    help="the committed replication's set: the first N/2 problems per task, every non-empty answer "
                         "kept (cut or wrong too)")
    args = ap.parse_args(argv)
    for name in ("n", "max_new_tokens", "batch_size") + (("max_draw",) if args.max_draw is not None else ()):
        if getattr(args, name) < 1:
            flag = "N" if name == "n" else f"--{name.replace('_', '-')}"
            ap.error(f"{flag} must be >= 1, got {getattr(args, name)}")
    if not args.out.endswith(".jsonl"):
        ap.error(f"OUT {args.out!r} must end in .jsonl (OUT.meta.json is written beside it)")
    return args


def prompts(split: str, seed: int, max_draw: int) -> list[dict]:
    """``max_draw`` generated records, the tasks taken in turn (so any prefix is balanced)."""
    from deft.data.records import RecordError
    from deft.data.sources import source_records

    per_task = []
    for task in TASKS:
        rows = []
        for where, rec in source_records(task, n=-(-max_draw // len(TASKS)), seed=seed, split=split):
            if isinstance(rec, RecordError):
                raise SystemExit(f"{where}: {rec}")
            rows.append(rec)
        per_task.append(rows)
    return [r for r in chain.from_iterable(zip_longest(*per_task)) if r is not None][:max_draw]


def per_task_counts(kept: list[dict], drawn: list[dict]) -> dict:
    """``{task: {"drawn", "kept"}}``."""
    return {t: {"drawn": sum(r["task"] == t for r in drawn), "kept": sum(r["task"] == t for r in kept)}
            for t in TASKS}


def main(argv=None) -> None:
    from deft.eval.self_answers import self_answer_set
    from deft.io import atomic_write_json
    from deft.data import write_jsonl
    from deft.model import load_model, load_tokenizer

    args = _args(argv)
    if args.every_answer:
        return every_answer(args)
    max_draw = args.max_draw or 16 * args.n
    records = prompts(args.split, args.seed, max_draw)  # bad task settings fail here, before the model loads
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    model.eval()
    kept, counts = self_answer_set(model, tokenizer, records, args.n, max_new_tokens=args.max_new_tokens,
                                   batch_size=args.batch_size, log=print)
    write_jsonl(kept, args.out)
    meta = Path(args.out[:-len(".jsonl")] + ".meta.json")
    settings = {"model": args.model, "n": args.n, "split": args.split, "seed": args.seed, "tasks": list(TASKS),
                "max_new_tokens": args.max_new_tokens, "max_draw": max_draw, "batch_size": args.batch_size,
                "decoding": "greedy", "kept_if": "finished before the cap, non-empty, task score == 1"}
    atomic_write_json(meta, {"counts": counts, "per_task": per_task_counts(kept, records[:counts["drawn"]]),
                             "settings": settings})
    short = "" if len(kept) == args.n else f" (fewer than the {args.n} asked: raise --max-draw)"
    print(f"kept {len(kept)} of {counts['drawn']} answers drawn{short}: {counts['cut']} cut at "
          f"{args.max_new_tokens} tokens, {counts['empty']} empty, {counts['wrong']} wrong; "
          f"wrote {args.out} and {meta}")


def every_answer(args) -> None:
    """The committed replication's set: the first N/2 problems of each task in task order, answered
    greedily (:func:`deft.eval.heldout.general_records`), every non-empty answer kept."""
    from deft.data import write_jsonl
    from deft.data.records import RecordError
    from deft.data.sources import source_records
    from deft.eval.heldout import general_records
    from deft.model import load_model, load_tokenizer

    prompts = []
    for task in TASKS:
        for where, rec in source_records(task, n=args.n // len(TASKS), seed=args.seed, split=args.split):
            if isinstance(rec, RecordError):
                raise SystemExit(f"{where}: {rec}")
            prompts.append(rec["prompt"])
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    model.eval()
    records = general_records(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens)
    write_jsonl([dict(r, source="self-answers") for r in records], args.out)
    print(f"wrote {len(records)} records ({len(prompts) - len(records)} empty answers dropped) to {args.out}")


if __name__ == "__main__":
    main()
