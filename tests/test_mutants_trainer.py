"""The trainer's loss step (``DeftTrainer.compute_loss``) where the absolute tests don't reach.

Each test here was written for a mutant of ``make mutate`` (group ``trainer_loss``, see
docs/testing.md); expected values come from an independent computation or a physical bound.
"""

import json
import time

from deft.train import train
from test_train_absolute import _records, _sgd_cfg


def test_step_throughput_is_measured_from_the_first_micro_batch(tiny_model_dir, tmp_path):
    # tokens_per_s = input tokens / seconds since the step's first forward: at least the tokens over
    # the whole train() call's wall time, and at most what a forward + backward in 0.1 ms would give
    data = _records(tmp_path / "data.jsonl", 2)
    start = time.perf_counter()
    train(_sgd_cfg(tiny_model_dir, data, tmp_path / "run", batch_size=1, grad_accum=2), log=lambda *_: None)
    wall = time.perf_counter() - start
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["input_tokens"] / wall <= row["tokens_per_s"] <= row["input_tokens"] / 1e-4
