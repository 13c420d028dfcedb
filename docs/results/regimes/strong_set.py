"""Build the model-strong set of the regime replication: records whose responses are the embedded
model's own greedy answers, so the base model already predicts the targets well (the paper's
model-strong regime: the prior agrees with the data).

Prompts: reasoning-gym ``basic_arithmetic`` and ``letter_counting`` problems (``deft data``,
seeded), answered greedily by the base model (at most 64 new tokens, empty answers dropped). The
training and held-out files use disjoint seeds (0 and 1) and the ``train`` / ``test`` splits.

Usage: python docs/results/regimes/strong_set.py MODEL N SPLIT SEED OUT.jsonl
"""

from __future__ import annotations

import sys

from deft.data import write_jsonl
from deft.data.sources import source_records
from deft.eval.heldout import general_records
from deft.model import load_model, load_tokenizer

TASKS = ("rg:basic_arithmetic", "rg:letter_counting")


def main(model_name: str, n: int, split: str, seed: int, out: str) -> None:
    prompts = []
    for task in TASKS:
        for where, rec in source_records(task, n=n // len(TASKS), seed=seed, split=split):
            if isinstance(rec, Exception):
                raise SystemExit(f"{where}: {rec}")
            prompts.append(rec["prompt"])
    model, tokenizer = load_model(model_name), load_tokenizer(model_name)
    model.eval()
    records = general_records(model, tokenizer, prompts, max_new_tokens=64)
    write_jsonl([dict(r, source="self-answers") for r in records], out)
    print(f"wrote {len(records)} records ({len(prompts) - len(records)} empty answers dropped) to {out}")


if __name__ == "__main__":
    name, n, split, seed, out = sys.argv[1:6]
    main(name, int(n), split, int(seed), out)
