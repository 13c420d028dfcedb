#!/usr/bin/env python
"""Step time and peak memory of one training step on the embedded model, case by case, side by side.

A step is forward + backward + ``torch.optim.AdamW`` step on one batch of SmolLM2-135M-Instruct in
fp32 (default 4 rows x 512 FigFont tokens, the first quarter of each row without loss). Cases are
``method/objective``: ``fused`` (``patch_fused_loss``: no ``[tokens, V]`` logits), ``plain``
(the same loss from materialised logits), ``trl`` (TRL's ``SFTTrainer``, ``loss_type=nll|dft``),
``deftsft`` (deft's ``DeftSFTTrainer``: TRL's trainer with deft's fused objective) and
``decoder/-`` (the decoder alone: the part every case shares). TRL cases are timed as
``trainer.training_step`` + the optimizer step on a pre-tokenised ``input_ids`` +
``completion_mask`` dataset; their collated batch is checked equal to the others'.

Each case runs in its own subprocess (``casekit``): its peak is the peak RSS (CPU;
``max_memory_allocated`` on CUDA) above a baseline taken once the model, AdamW with its state, the
batch and any trainer exist. ``--group all`` runs every case one after the other in a single
subprocess, each on a freshly loaded model (one interpreter start instead of one per case: for
quick checks such as the GPU suite's dry run; a case's peak may then include what an earlier case
left allocated). ``--interleave N`` adds one time-only subprocess running every case's
step in turn for N rounds on one model, so that time ratios are paired per round and load from
other processes falls on both cases alike; time targets are judged on them when present.

    python benchmarks/train_step.py --seq-len 64 --repeats 1                 # smoke test
    python benchmarks/train_step.py --interleave 4 --markdown docs/benchmarks/train_step_cpu.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from casekit import (  # benchmarks/casekit.py: per-case processes, memory readings, shared options
    MiB, RESULT_TAG, PeakMeter, add_run_args, child_env, command_line, environment_info, output_paths,
    package_versions, run_case_process, run_cases, terminate, trim_heap,
)
from report import write_train_step  # benchmarks/report.py: the markdown report

ROOT = Path(__file__).resolve().parent.parent
IGNORE = -100
CASES = ["fused/nll", "fused/deft", "plain/nll", "plain/deft", "trl/nll", "trl/dft", "deftsft/nll", "deftsft/deft",
         "decoder/-"]


# ------------------------------------------------------------------------------------ in a case
class Bench:
    """The model, optimizer and batch a case subprocess shares between its cases."""

    def __init__(self, cfg: dict):
        import torch

        from deft.model.loading import load_model

        torch.set_num_threads(int(cfg["threads"]))
        torch.manual_seed(cfg["seed"])
        self.torch, self.cfg = torch, cfg
        self.device = torch.device(cfg["device"])
        self.batch = json.loads(Path(cfg["batch_file"]).read_text())
        self.ids = torch.tensor(self.batch["input_ids"], device=self.device)
        self.labels = torch.tensor(self.batch["labels"], device=self.device)
        self.model = load_model(cfg["model"], dtype=torch.float32).to(self.device).train()
        self.model.config.use_cache = False
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg["lr"], weight_decay=0.0)
        self.workdir = tempfile.mkdtemp(prefix="deft-train-step-")
        self.base = self.model  # the object whose forward the cases replace

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def build_adam_state(self):
        """AdamW's state without changing the weights: a step at learning rate 0 on zero gradients."""
        lrs = [g["lr"] for g in self.opt.param_groups]
        for g in self.opt.param_groups:
            g["lr"] = 0.0
        for p in self.params:
            p.grad = self.torch.zeros_like(p)
        self.opt.step()
        for g, lr in zip(self.opt.param_groups, lrs):
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)

    def trainer(self, method: str, objective: str):
        """TRL's ``SFTTrainer`` (``trl``) or ``DeftSFTTrainer`` (``deftsft``) on this model and batch."""
        from datasets import Dataset

        from deft.model.loading import load_tokenizer

        rows, plen = self.batch["input_ids"], self.batch["prompt_len"]
        data = Dataset.from_dict({"input_ids": rows, "completion_mask": [[0] * plen + [1] * (len(r) - plen)
                                                                         for r in rows]})
        common = dict(output_dir=self.workdir, completion_only_loss=True, max_length=len(rows[0]), packing=False,
                      padding_free=False, per_device_train_batch_size=len(rows), gradient_checkpointing=False,
                      bf16=False, fp16=False, learning_rate=self.cfg["lr"], weight_decay=0.0, report_to=[],
                      use_cpu=self.device.type == "cpu", save_strategy="no", logging_strategy="no", disable_tqdm=True,
                      seed=self.cfg["seed"])
        if method == "trl":
            from trl import SFTConfig as Config, SFTTrainer as Trainer

            common["loss_type"] = objective
        else:
            from deft.integrations.trl import DeftSFTConfig as Config, DeftSFTTrainer as Trainer

            common["objective"] = objective
        trainer = Trainer(model=self.model, args=Config(**common), train_dataset=data,
                          processing_class=load_tokenizer(self.cfg["model"]), optimizers=(self.opt, None))
        inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
        if not (self.torch.equal(inputs["input_ids"].cpu(), self.ids.cpu())
                and self.torch.equal(inputs["labels"].cpu(), self.labels.cpu())):
            raise RuntimeError("TRL's collated batch differs from the benchmark batch")
        return trainer, inputs

    def case(self, key: str):
        """``(select, forward_backward)`` for one case; ``select()`` puts its forward in place."""
        torch, model = self.torch, self.model
        from deft.model.fused_forward import lm_parts, patch_fused_loss

        method, objective = key.split("/")
        mask = torch.ones_like(self.ids)
        if method in ("fused", "plain"):
            patch_fused_loss(model, objective, fused=method == "fused")

            def loss_fn():
                out = model(input_ids=self.ids, attention_mask=mask, labels=self.labels)
                return out.loss / max(int(out.num_tokens), 1)
        elif method == "decoder":
            decoder, _ = lm_parts(model)

            def loss_fn():
                return decoder(input_ids=self.ids, attention_mask=mask).last_hidden_state[:, :-1].pow(2).mean()
        elif method not in ("trl", "deftsft"):
            raise ValueError(f"unknown case {key!r}")
        if method in ("trl", "deftsft"):
            trainer, inputs = self.trainer(method, objective)
            items = torch.tensor(int((inputs["labels"][:, 1:] != IGNORE).sum()))  # what Trainer.train passes

            def fb():  # forward + backward, as Trainer.train runs it
                return trainer.training_step(trainer.model, dict(inputs), items)
        else:
            def fb():
                loss = loss_fn()
                loss.backward()
                return loss
        state = {k: self.base.__dict__.get(k) for k in ("forward", "_deft_config", "_deft_original_forward")}

        def select():
            for k, v in state.items():
                if v is None:
                    self.base.__dict__.pop(k, None)
                else:
                    object.__setattr__(self.base, k, v)
        return select, fb

    def step(self, fb):
        """One timed step: ``fb()`` (forward + backward) and the optimizer; ``(seconds, loss)``."""
        t0 = time.perf_counter()
        loss = fb()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sync()
        return time.perf_counter() - t0, float(loss.detach())


def run_memory_case(cfg: dict) -> dict:
    """One case: warm-up steps, then timed steps, with the peak above the baseline of each."""
    import gc

    b = Bench(cfg)
    select, fb = b.case(cfg["cases"][0])
    select()
    b.build_adam_state()
    gc.collect()
    trim_heap()
    meter = PeakMeter(b.device.type == "cuda", b.device)

    def measure(n):
        gc.collect()
        meter.reset()
        steps = [b.step(fb) for _ in range(n)]
        b.sync()
        return steps, meter.peak()

    warm, peak_first = measure(cfg["warmup"])
    timed, peak = measure(cfg["repeats"])
    times = [t for t, _ in timed]
    return {"status": "ok", "time_s": statistics.median(times), "times_s": times, "peak_bytes": peak,
            "peak_first_bytes": peak_first, "base_bytes": meter.base, "loss_first": (warm + timed)[0][1]}


def run_interleaved(cfg: dict) -> dict:
    """Time only: every case's step in turn on one model, one warm-up step each, then ``rounds``
    rounds, each starting one case later."""
    b = Bench(cfg)
    keys = sorted(cfg["cases"], key=lambda k: not k.startswith(("trl/", "deftsft/")))  # trainers wrap first
    fns = {k: b.case(k) for k in keys}
    b.build_adam_state()

    def run(k):
        fns[k][0]()
        return b.step(fns[k][1])[0]

    for k in cfg["cases"]:
        run(k)
    steps = {k: [] for k in cfg["cases"]}
    for rnd in range(cfg["rounds"]):
        shift = rnd % len(cfg["cases"])
        for k in cfg["cases"][shift:] + cfg["cases"][:shift]:
            steps[k].append(run(k))
    return {"status": "ok", "steps": steps}


# ------------------------------------------------------------------------------------ the parent
def build_batch(model: str, rows: int, seq_len: int, prompt_len: int, seed: int) -> dict:
    """FigFont records (seed ``seed``) in the model's chat template, concatenated and cut into
    ``rows`` rows of ``seq_len`` tokens; labels -100 on the first ``prompt_len`` positions."""
    sys.path.insert(0, str(ROOT / "src"))
    from deft.data.records import RecordError
    from deft.data.sources import source_records
    from deft.data.tokenize import RecordTokenizer
    from deft.model.loading import load_tokenizer

    if not 0 < prompt_len < seq_len:
        raise SystemExit(f"--prompt-len must be between 1 and seq_len - 1 (got {prompt_len})")
    encode, ids, n = RecordTokenizer(load_tokenizer(model)), [], max(16, rows * seq_len // 100)
    while len(ids) < rows * seq_len:
        ids = []
        for _, rec in source_records("figfont", n=n, seed=seed):
            ex = None if isinstance(rec, RecordError) else encode(rec)
            ids += ex.input_ids if ex is not None else []
        n *= 2
    batch = [ids[i * seq_len:(i + 1) * seq_len] for i in range(rows)]
    labels = [[IGNORE] * prompt_len + r[prompt_len:] for r in batch]
    return {"input_ids": batch, "labels": labels, "prompt_len": prompt_len,
            "sha256_16": hashlib.sha256(json.dumps(batch).encode()).hexdigest()[:16],
            "loss_tokens": sum(lab != IGNORE for r in labels for lab in r[1:])}


def _with_load(run) -> list:
    """``run()``'s results, each with the load average before and after it."""
    load = os.getloadavg()[0]
    results = run()
    for res in results:
        res.pop("retry", None)
        res["load"] = [round(load, 1), round(os.getloadavg()[0], 1)]
    return results


def run_child(cfg: dict, timeout: float) -> dict:
    """One case in its own subprocess."""
    script, env = str(Path(__file__).resolve()), child_env(cfg["threads"])
    return _with_load(lambda: [run_case_process(script, cfg, timeout, env, note_chars=300)])[0]


def run_group(cfgs: list, timeout: float) -> list:
    """Every case of ``cfgs`` in one subprocess (``--group all``); one result each, in order."""
    script, env = str(Path(__file__).resolve()), child_env(cfgs[0]["threads"])
    return _with_load(lambda: run_cases(script, cfgs, timeout, env))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", "--batch-size", type=int, default=4, help="rows per batch")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--prompt-len", type=int, default=None, help="positions without loss per row (default seq/4)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated method/objective cases")
    ap.add_argument("--methods", default=None, help="instead of --cases: methods x --objectives (trl: trl/nll, "
                                                    "trl/dft and deftsft/<objective>)")
    ap.add_argument("--objectives", default="nll,deft", help="objectives of --methods")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per case (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="run the case list this many times, alternating its order")
    ap.add_argument("--interleave", type=int, default=0, metavar="N", help="time-only interleaved rounds")
    ap.add_argument("--group", default="case", choices=["case", "all"],
                    help="case: one subprocess per case (isolated peaks); all: every case in one subprocess")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--note", action="append", default=None, help="a line for the report (repeatable)")
    ap.add_argument("--render", default=None, metavar="JSON", help="only rebuild the markdown from a results file")
    add_run_args(ap, "train_step", timeout=1800.0)
    a = ap.parse_args(argv)
    if a._case is not None:
        given = json.loads(a._case)
        for cfg in given if isinstance(given, list) else [given]:  # a list: the cases of --group all
            res = run_interleaved(cfg) if cfg["mode"] == "interleave" else run_memory_case(cfg)
            print(RESULT_TAG + json.dumps(res), flush=True)
        return 0
    out, md_path = output_paths(a, "train_step")
    if a.render:
        report = json.loads(Path(a.render).read_text())
        report["notes"] = a.note if a.note is not None else report.get("notes", [])
        print(write_train_step(report, out, md_path))
        return 0

    import signal

    signal.signal(signal.SIGTERM, terminate)
    cases = [c.strip() for c in a.cases.split(",") if c.strip()] if a.methods is None else expand(a.methods,
                                                                                                   a.objectives)
    versions = package_versions(("torch", "transformers", "trl", "peft", "accelerate", "datasets"))
    command = command_line(__file__, argv)
    plen = a.prompt_len if a.prompt_len is not None else a.seq_len // 4
    batch = build_batch(a.model, a.rows, a.seq_len, plen, a.seed)
    report = {"command": command, "environment": environment_info(a.device, versions, a.threads), "model": a.model,
              "batch": {"rows": a.rows, "seq_len": a.seq_len, "prompt_len": plen, "sha256_16": batch["sha256_16"],
                        "loss_tokens": batch["loss_tokens"]},
              "cases": cases, "group": a.group, "repeats": a.repeats, "warmup": a.warmup, "rounds": a.rounds,
              "lr": a.lr, "notes": a.note or [], "records": []}
    from deft.io import atomic_write_text

    with tempfile.TemporaryDirectory(prefix="deft-train-step-") as tmp:
        (Path(tmp) / "batch.json").write_text(json.dumps(batch))
        base = dict(model=a.model, device=a.device, threads=a.threads, seed=a.seed, lr=a.lr, repeats=a.repeats,
                    warmup=a.warmup, batch_file=str(Path(tmp) / "batch.json"))
        for rnd in range(a.rounds):
            keys = cases if rnd % 2 == 0 else cases[::-1]
            if a.group == "all":
                results = run_group([dict(base, mode="memory", cases=[key]) for key in keys], a.timeout)
            else:
                results = (run_child(dict(base, mode="memory", cases=[key]), a.timeout) for key in keys)
            for key, res in zip(keys, results):
                report["records"].append({"case": key, "round": rnd, **res})
                atomic_write_text(out, json.dumps(report, indent=1))
                print(f"round {rnd} {key:>14}: " + (
                    f"{res['time_s']:.2f} s/step, peak +{res['peak_bytes'] / MiB:.0f} MiB, loss {res['loss_first']:.5f}"
                    if res["status"] == "ok" else f"{res['status']}: {res.get('note', '')}"), flush=True)
        ok = [k for k in cases if any(r["case"] == k and r["status"] == "ok" for r in report["records"])]
        if a.interleave and len(ok) > 1:
            report["interleaved"] = run_child(dict(base, mode="interleave", cases=ok, rounds=a.interleave),
                                              a.timeout * a.interleave)
    print(write_train_step(report, out, md_path) + f"\nwrote {out}, {md_path}")
    return 0


def expand(methods: str, objectives: str) -> list:
    """``--methods`` x ``--objectives`` as cases (the earlier interface of this script)."""
    objs, cases = [o for o in objectives.split(",") if o], []
    for m in [m for m in methods.split(",") if m]:
        cases += {"decoder": ["decoder/-"], "trl": ["trl/nll", "trl/dft"] + [f"deftsft/{o}" for o in objs]}.get(
            m, [f"{m}/{o}" for o in objs])
    return list(dict.fromkeys(cases))


if __name__ == "__main__":
    sys.exit(main())
