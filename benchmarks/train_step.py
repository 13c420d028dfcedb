#!/usr/bin/env python
"""Tokens/s and peak memory of a training step on the embedded model, side by side.

A step is forward + backward + ``torch.optim.AdamW`` step on one batch (default 4 sequences of
512 tokens, the first 128 positions of each without loss) of the embedded SmolLM2-135M-Instruct in
fp32. Methods:

* ``fused``   - the model patched with ``patch_fused_loss(model, objective)``: the decoder's
  hidden states and the LM-head weight go to the fused chunked loss, no ``[B, T, V]`` logits;
* ``plain``   - ``patch_fused_loss(model, objective, fused=False)``: the same loss from
  materialised logits (the LM head over every position, then ``deft.token_loss``), the plain
  Hugging Face way;
* ``trl``     - TRL's ``SFTTrainer`` with ``SFTConfig(loss_type="dft")`` on the same model, batch
  and optimizer, timed through ``trainer.training_step`` + the optimizer step (only when ``trl``
  is importable; it is not a dependency of the project);
* ``decoder`` - the decoder alone with a trivial loss on its hidden states (no LM head) plus the
  optimizer step: the part of the step every method shares.

Every case runs in its own subprocess so that its peak memory is its own: the peak resident set
size (CPU; ``torch.cuda.max_memory_allocated`` on CUDA) above the resident size once the model,
the optimizer with its state (built by a zero-learning-rate step on zero gradients), the batch and,
for TRL, the trainer exist. With ``--interleave`` one more subprocess times every case's step in
turn on one model, so that time ratios can be taken between steps of the same round, which load
from other processes hits alike. Results go to JSON and a markdown report; see
``benchmarks/README.md``.

    python benchmarks/train_step.py --seq-len 64 --repeats 1          # smoke test, a minute or two
    python benchmarks/train_step.py --rounds 2 --interleave 4 \\
        --out benchmarks/results/train_step_cpu.json --markdown docs/benchmarks/train_step_cpu.md
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from casekit import (  # benchmarks/casekit.py: per-case processes and memory readings
    MiB, RESULT_TAG, environment_info, peak_rss_bytes, read_status_kib, reset_peak_rss, run_case_process, terminate, trim_heap,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

METHODS = ["fused", "plain", "trl", "decoder"]
DEFAULT_OBJECTIVES = ["nll", "deft"]
IGNORE_INDEX = -100
LR = 5e-5                 # the trainer's default peak learning rate
DEFT_VS_NLL_TARGET = 1.05  # fused deft step time <= 1.05 x fused nll
TRL_MEMORY_TARGET = 0.7    # fused deft peak <= 0.7 x TRL DFT's peak (and faster than it)



# --------------------------------------------------------------------------------------------
# inside a case subprocess
# --------------------------------------------------------------------------------------------

def _build_optimizer_state(opt, params) -> None:
    """Allocate AdamW's state (``exp_avg``, ``exp_avg_sq``) without changing the weights: one
    step with learning rate 0 on zero gradients, gradients then freed."""
    import torch

    lrs = [g["lr"] for g in opt.param_groups]
    for g in opt.param_groups:
        g["lr"] = 0.0
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)


def _trl_trainer(model, tokenizer, opt, batch: dict, case: dict, workdir: str):
    """TRL's ``SFTTrainer`` with DFT on the same model, optimizer and token ids.

    The dataset is pre-tokenised (``input_ids`` + ``completion_mask`` with
    ``completion_only_loss=True``), so TRL builds the labels itself: -100 on the prompt part.
    Gradient checkpointing and bf16, on by default in ``SFTConfig``, are turned off so that every
    case runs the same fp32 model without recomputation."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    prompt_len, seq_len = case["prompt_len"], case["seq_len"]
    rows = batch["input_ids"]
    ds = Dataset.from_dict({
        "input_ids": rows,
        "completion_mask": [[0] * prompt_len + [1] * (len(r) - prompt_len) for r in rows],
    })
    args = SFTConfig(
        output_dir=workdir,
        loss_type="dft",
        completion_only_loss=True,
        max_length=seq_len,
        packing=False,
        padding_free=False,
        per_device_train_batch_size=len(rows),
        gradient_accumulation_steps=1,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        learning_rate=case["lr"],
        weight_decay=0.0,
        use_cpu=case["device"] == "cpu",
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=case["seed"],
    )
    return SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                      optimizers=(opt, None))


class _Setup:
    """What every case of a subprocess shares: the model, its optimizer (and AdamW state once
    built), the batch and the case-specific step functions."""

    def __init__(self, case: dict):
        import torch

        torch.set_num_threads(int(case["threads"]))
        torch.manual_seed(case["seed"])
        from deft.model.loading import load_model

        self.torch = torch
        self.case = case
        self.device = torch.device(case["device"])
        self.cuda = self.device.type == "cuda"
        self.batch = json.loads(Path(case["batch_file"]).read_text())
        self.input_ids = torch.tensor(self.batch["input_ids"], dtype=torch.long, device=self.device)
        self.labels = torch.tensor(self.batch["labels"], dtype=torch.long, device=self.device)
        self.attention_mask = torch.ones_like(self.input_ids)
        self.model = load_model(case["model"], dtype=torch.float32).to(self.device)
        self.model.train()
        self.model.config.use_cache = False
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=case["lr"], weight_decay=0.0)
        self.workdir = tempfile.mkdtemp(prefix="deft-train-step-")
        self.info: dict = {"parameters": sum(p.numel() for p in self.params),
                           "attn_implementation": getattr(self.model.config, "_attn_implementation", None)}

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    def case_fn(self, method: str, objective: str):
        """``(select, forward_backward)``: ``select()`` puts the case's forward in place (the
        cases of one subprocess share the model), ``forward_backward()`` returns the loss and the
        phase times."""
        torch, model, sync = self.torch, self.model, self.sync
        input_ids, labels, attention_mask = self.input_ids, self.labels, self.attention_mask
        from deft.model.fused_forward import lm_parts, patch_fused_loss

        if method in ("fused", "plain"):
            def select():
                patch_fused_loss(model, objective, fused=method == "fused")

            def forward_backward():
                t0 = time.perf_counter()
                out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
                loss = out.loss / max(int(out.num_tokens), 1)
                sync()
                t1 = time.perf_counter()
                loss.backward()
                sync()
                return float(loss.detach()), {"forward_s": t1 - t0, "backward_s": time.perf_counter() - t1}
            return select, forward_backward

        if method == "decoder":
            decoder, _ = lm_parts(model)

            def forward_backward():
                t0 = time.perf_counter()
                hidden = decoder(input_ids=input_ids, attention_mask=attention_mask,
                                 use_cache=False).last_hidden_state
                loss = hidden[:, :-1].pow(2).mean()
                sync()
                t1 = time.perf_counter()
                loss.backward()
                sync()
                return float(loss.detach()), {"forward_s": t1 - t0, "backward_s": time.perf_counter() - t1}
            return (lambda: None), forward_backward

        if method == "trl":
            import trl
            from deft.model.loading import load_tokenizer

            tokenizer = load_tokenizer(self.case["model"])
            trainer = _trl_trainer(model, tokenizer, self.opt, self.batch, self.case, self.workdir)
            trl_forward = model.forward  # SFTTrainer added its fused LM head to the model's forward
            rows = [trainer.train_dataset[i] for i in range(len(self.batch["input_ids"]))]
            inputs = trainer.data_collator(rows)
            if not (torch.equal(inputs["input_ids"].cpu(), input_ids.cpu())
                    and torch.equal(inputs["labels"].cpu(), labels.cpu())):
                raise RuntimeError("TRL's collated batch differs from the benchmark batch (input_ids or labels)")
            self.info.update(trl=trl.__version__, trl_inputs=sorted(inputs), trl_loss_type=trainer.args.loss_type,
                             trl_completion_only_loss=trainer.completion_only_loss)
            # what Trainer.train passes: the step's loss tokens (labels shifted by one)
            num_items = torch.tensor(int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum()))

            def select():
                object.__setattr__(model, "forward", trl_forward)

            def forward_backward():
                t0 = time.perf_counter()
                loss = trainer.training_step(trainer.model, dict(inputs), num_items)
                sync()
                return float(loss.detach()), {"forward_backward_s": time.perf_counter() - t0}
            return select, forward_backward

        raise ValueError(f"unknown method {method!r}")

    def step(self, forward_backward):
        t0 = time.perf_counter()
        loss, phases = forward_backward()
        t1 = time.perf_counter()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sync()
        t2 = time.perf_counter()
        phases["optimizer_s"] = t2 - t1
        return t2 - t0, loss, phases


def run_case(case: dict) -> dict:
    import gc

    s = _Setup(case)
    torch, cuda, device = s.torch, s.cuda, s.device
    select, forward_backward = s.case_fn(case["method"], case["objective"])
    select()
    _build_optimizer_state(s.opt, s.params)
    gc.collect()
    s.sync()

    def reset():
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            return True
        gc.collect()
        trim_heap()
        return reset_peak_rss()

    def peak():
        s.sync()
        return int((torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()) - base)

    if not cuda:
        trim_heap()
    base = torch.cuda.memory_allocated(device) if cuda else (read_status_kib("VmRSS") or 0) * 1024
    hwm_reset = reset()
    warm = [s.step(forward_backward) for _ in range(case["warmup"])]
    peak_warmup = peak() if warm else None
    if warm:
        hwm_reset = reset() and hwm_reset
    timed = [s.step(forward_backward) for _ in range(case["repeats"])]
    peak_timed = peak() if timed else None
    s.close()

    times = [t for t, _, _ in timed]
    phases = {}
    for key in (timed or warm)[0][2] if (timed or warm) else []:
        phases[key] = statistics.median(p[key] for _, _, p in timed) if timed else None
    return {
        "status": "ok",
        "time_s": statistics.median(times) if times else None,
        "time_min_s": min(times) if times else None,
        "times_s": times,
        "warmup_times_s": [t for t, _, _ in warm],
        "phases_s": phases,
        "phase_times_s": [p for _, _, p in timed],
        "peak_bytes": peak_timed if peak_timed is not None else peak_warmup,
        "peak_first_bytes": peak_warmup,
        "base_bytes": int(base),
        "peak_reset": hwm_reset,
        "loss_first": (warm or timed)[0][1] if (warm or timed) else None,
        "losses": [loss for _, loss, _ in warm + timed],
        "loss_tokens": int(s.batch["loss_tokens"]),
        **s.info,
    }


def run_interleaved(case: dict) -> dict:
    """Time only: every case's step in turn on one model and optimizer, ``rounds`` times (each
    round starting one case later), after one warm-up step per case; load from other processes
    then falls on all cases alike, and ratios are taken between steps of the same round."""
    s = _Setup(case)
    cases = [tuple(c) for c in case["cases"]]
    fns = {}
    for method, objective in sorted(cases, key=lambda c: c[0] != "trl"):  # TRL wraps the model's forward first
        fns[(method, objective)] = s.case_fn(method, objective)
    _build_optimizer_state(s.opt, s.params)

    def run(c):
        select, forward_backward = fns[c]
        select()
        return s.step(forward_backward)

    for c in cases:
        run(c)
    steps: dict = {_key(*c): [] for c in cases}
    for rnd in range(case["rounds"]):
        k = rnd % len(cases)
        for c in cases[k:] + cases[:k]:
            t, loss, phases = run(c)
            steps[_key(*c)].append({"round": rnd, "time_s": t, "loss": loss, **phases})
    s.close()
    return {"status": "ok", "rounds": case["rounds"], "order": [_key(*c) for c in cases], "steps": steps,
            "time_s": {k: statistics.median(x["time_s"] for x in v) for k, v in steps.items()},
            "time_min_s": {k: min(x["time_s"] for x in v) for k, v in steps.items()}, **s.info}


# --------------------------------------------------------------------------------------------
# the parent process
# --------------------------------------------------------------------------------------------

def build_batch(model: str, batch_size: int, seq_len: int, prompt_len: int, seed: int) -> dict:
    """Token ids of FigFont records (``deft data figfont``, seed ``seed``) rendered with the
    model's chat template, concatenated in order and cut into ``batch_size`` rows of ``seq_len``
    tokens; labels are -100 on the first ``prompt_len`` positions of each row and the token ids
    elsewhere."""
    sys.path.insert(0, str(ROOT / "src"))
    from deft.data.records import RecordError
    from deft.data.sources import source_records
    from deft.data.tokenize import RecordTokenizer
    from deft.model.loading import load_tokenizer

    if not 0 < prompt_len < seq_len:
        raise SystemExit(f"--prompt-len must be between 1 and seq_len - 1 (got {prompt_len})")
    tokenizer = load_tokenizer(model)
    records = RecordTokenizer(tokenizer)
    need = batch_size * seq_len
    ids: list[int] = []
    n = max(16, need // 100)
    used = 0
    while len(ids) < need:
        ids, used = [], 0
        for _, rec in source_records("figfont", n=n, seed=seed):
            if isinstance(rec, RecordError):
                continue
            ex = records(rec)
            if ex is None:
                continue
            ids += ex.input_ids
            used += 1
            if len(ids) >= need:
                break
        n *= 2
    rows = [ids[i * seq_len:(i + 1) * seq_len] for i in range(batch_size)]
    labels = [[IGNORE_INDEX] * prompt_len + r[prompt_len:] for r in rows]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    loss_tokens = sum(1 for r in labels for lab in r[1:] if lab != IGNORE_INDEX)
    return {"input_ids": rows, "labels": labels, "records_used": used, "sha256_16": digest,
            "loss_tokens": loss_tokens}


def _run_child(case: dict, timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = str(case["threads"])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    res = run_case_process(str(Path(__file__).resolve()), case, timeout, env, note_chars=400)
    res.pop("retry", None)
    return res


def interleaved_timing(batch: dict, cases: list, base: dict, rounds: int, timeout: float) -> dict:
    """Run the interleaved timing subprocess (see ``run_interleaved``) for ``cases``."""
    if len(cases) < 2:
        return {"status": "n/a", "note": "fewer than two cases ran", "rounds": rounds}
    tmp = Path(tempfile.mkdtemp(prefix="deft-train-step-batch-"))
    try:
        batch_file = tmp / "batch.json"
        batch_file.write_text(json.dumps(batch))
        case = dict(base, method="interleaved", objective="-", cases=[list(c) for c in cases], rounds=rounds,
                    batch_file=str(batch_file))
        print(f"interleaved timing: {rounds} round(s) of {', '.join(_key(*c) for c in cases)}", flush=True)
        load = os.getloadavg()[0]
        res = _run_child(case, timeout * max(1, rounds))
        res["load_before"], res["load_after"] = round(load, 2), round(os.getloadavg()[0], 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res.setdefault("rounds", rounds)
    if res.get("status") == "ok":
        for key in res["order"]:
            print(f"interleaved  {key:>12}  median {res['time_s'][key]:8.2f} s/step  "
                  f"fastest {res['time_min_s'][key]:8.2f} s", flush=True)
    else:
        print(f"interleaved timing: {res.get('status')}: {res.get('note', '')}", flush=True)
    return res


def _versions() -> dict:
    out = {}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def environment(device: str, threads: int) -> dict:
    return environment_info(device, _versions(), threads)


def _key(method: str, objective: str) -> str:
    return f"{method}/{objective}"


def aggregate(records: list[dict]) -> dict:
    """Per case over its rounds: median of the rounds' median step times, the fastest step, max of
    the peaks."""
    by_case: dict = {}
    for rec in records:
        by_case.setdefault(_key(rec["method"], rec["objective"]), []).append(rec)
    out = {}
    for key, recs in by_case.items():
        ok = [r for r in recs if r.get("status") == "ok" and r.get("time_s")]
        if not ok:
            out[key] = {"status": recs[-1].get("status"), "note": recs[-1].get("note", "")}
            continue
        phases = {}
        for name in ok[0]["phases_s"]:
            vals = [p[name] for r in ok for p in r["phase_times_s"] if p.get(name) is not None]
            phases[name] = statistics.median(vals) if vals else None
        out[key] = {
            "status": "ok",
            "key": key,
            "rounds": len(ok),
            "time_s": statistics.median(r["time_s"] for r in ok),
            "time_min_s": min(r["time_min_s"] for r in ok),
            "times_s": [t for r in ok for t in r["times_s"]],
            "phases_s": phases,
            "peak_bytes": max(r["peak_bytes"] for r in ok),
            "peak_first_bytes": max((r["peak_first_bytes"] or 0) for r in ok) or None,
            "base_bytes": statistics.median(r["base_bytes"] for r in ok),
            "loss_first": ok[0]["loss_first"],
        }
    return out


def _paired(inter: dict | None, a: str, b: str) -> float | None:
    """Median over the interleaved rounds of the ratio of case ``a``'s step to case ``b``'s."""
    if not inter or inter.get("status") != "ok" or a not in inter["steps"] or b not in inter["steps"]:
        return None
    tb = {x["round"]: x["time_s"] for x in inter["steps"][b]}
    vals = [x["time_s"] / tb[x["round"]] for x in inter["steps"][a] if x["round"] in tb]
    return statistics.median(vals) if vals else None


def ratios(agg: dict, objectives: list[str], inter: dict | None = None) -> tuple[list[dict], list[dict]]:
    """(informational ratios, targets) from the aggregated cases. Time ratios come as ``value``
    (from the median steps), ``value_min`` (from each case's fastest step, less sensitive to load
    from other processes) and, with an interleaved run, ``value_paired`` (the median over its
    rounds of the ratio between the two cases' steps of the same round). Time targets are judged
    on ``value_paired`` when there is one, else on ``value``."""
    def get(method, obj):
        r = agg.get(_key(method, obj))
        return r if r and r.get("status") == "ok" else None

    def ratio(a, b, field):
        return None if a is None or b is None else a[field] / b[field]

    def time_row(what, a, b):
        ka = None if a is None else a["key"]
        kb = None if b is None else b["key"]
        return {"what": what, "value": ratio(a, b, "time_s"), "value_min": ratio(a, b, "time_min_s"),
                "value_paired": _paired(inter, ka, kb) if ka and kb else None}

    def judged(row):
        return row["value_paired"] if row.get("value_paired") is not None else row["value"]

    info, targets = [], []
    for method in ("fused", "plain"):
        for obj in objectives:
            if obj == "nll":
                continue
            row = time_row(f"{obj} / nll step time ({method})", get(method, obj), get(method, "nll"))
            if method == "fused" and obj == "deft":
                r = judged(row)
                targets.append(dict(row, target=f"<= {DEFT_VS_NLL_TARGET:.2f}",
                                    met=None if r is None else r <= DEFT_VS_NLL_TARGET))
            else:
                info.append(row)
    for obj in objectives:
        f, p = get("fused", obj), get("plain", obj)
        info.append(time_row(f"plain / fused step time ({obj})", p, f))
        info.append({"what": f"plain / fused peak memory ({obj})", "value": ratio(p, f, "peak_bytes")})
    trl = get("trl", "dft")
    for obj in ("deft", "dft"):
        f = get("fused", obj)
        if f is None or trl is None and agg.get("trl/dft") is None:
            continue
        rt = time_row(f"fused {obj} / TRL DFT step time", f, trl)
        rm = {"what": f"fused {obj} / TRL DFT peak memory", "value": ratio(f, trl, "peak_bytes")}
        if obj == "deft":
            targets.append(dict(rt, target="< 1.00", met=None if judged(rt) is None else judged(rt) < 1.0))
            targets.append(dict(rm, target=f"<= {TRL_MEMORY_TARGET:.2f}",
                                met=None if rm["value"] is None else rm["value"] <= TRL_MEMORY_TARGET))
        else:
            info += [rt, rm]
    dec = get("decoder", "-")
    if dec is not None:
        for key in sorted(agg):
            r = agg[key]
            if key == "decoder/-" or r.get("status") != "ok":
                continue
            paired = None
            if inter and inter.get("status") == "ok" and key in inter["steps"] and "decoder/-" in inter["steps"]:
                td = {x["round"]: x["time_s"] for x in inter["steps"]["decoder/-"]}
                diffs = [x["time_s"] - td[x["round"]] for x in inter["steps"][key] if x["round"] in td]
                paired = statistics.median(diffs) if diffs else None
            info.append({"what": f"{key}: step time above the decoder-only step, s",
                         "value": r["time_s"] - dec["time_s"], "value_min": r["time_min_s"] - dec["time_min_s"],
                         "value_paired": paired, "unit": "s"})
    return info, targets


def _fx(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def case_table(agg: dict, order: list[str], tokens: int, inter: dict | None = None) -> str:
    with_inter = bool(inter and inter.get("status") == "ok")
    head = ["case", "step s (median)", "tokens/s", "fastest step s"] + (
        ["interleaved step s", "interleaved tokens/s"] if with_inter else []) + [
        "peak MiB", "first-step peak MiB", "baseline MiB", "forward s", "backward s", "optimizer s", "loss at step 1"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for key in order:
        r = agg.get(key)
        if r is None:
            continue
        if r.get("status") != "ok":
            lines.append(f"| {key} | {r.get('status')} |" + " - |" * (len(head) - 2))
            continue
        ph = r["phases_s"]
        fb = ph.get("forward_backward_s")
        cells = [key, _fx(r["time_s"]), f"{tokens / r['time_s']:.0f}", _fx(r.get("time_min_s"))]
        if with_inter:
            ti = inter["time_s"].get(key)
            cells += [_fx(ti), "-" if ti is None else f"{tokens / ti:.0f}"]
        cells += [f"{r['peak_bytes'] / MiB:.0f}",
                 "-" if not r.get("peak_first_bytes") else f"{r['peak_first_bytes'] / MiB:.0f}",
                 f"{r['base_bytes'] / MiB:.0f}",
                 _fx(ph.get("forward_s")) if fb is None else f"{fb:.2f} (fwd+bwd)",
                 _fx(ph.get("backward_s")) if fb is None else "-",
                 _fx(ph.get("optimizer_s")),
                 "-" if key == "decoder/-" or r.get("loss_first") is None else f"{r['loss_first']:.5f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_lines(info: list[dict], targets: list[dict], with_inter: bool = False) -> list[str]:
    head = "| ratio | from the median steps | from the fastest steps |"
    head += " interleaved, paired per round |" if with_inter else ""
    lines = [head + " target |", "|---|---:|---:|" + ("---:|" if with_inter else "") + "---|"]

    def cells(row, d):
        out = f"| {row['what']} | {_fx(row['value'], d)} | {_fx(row.get('value_min'), d)} |"
        return out + (f" {_fx(row.get('value_paired'), d)} |" if with_inter else "")

    for t in targets:
        mark = "n/a" if t["met"] is None else ("met" if t["met"] else "MISSED")
        lines.append(cells(t, 3) + f" {t['target']}: **{mark}** |")
    for i in info:
        lines.append(cells(i, 3 if i.get("unit") is None else 2) + " - |")
    return lines


def render(report: dict) -> tuple[str, list[str], str]:
    """(case table, ratio table lines, markdown report) from a report's records."""
    env, batch, cfg = report["environment"], report["batch"], report["config"]
    records = report["records"]
    agg = aggregate(records)
    objectives = report["objectives"]
    inter = report.get("interleaved")
    with_inter = bool(inter and inter.get("status") == "ok")
    info, targets = ratios(agg, objectives, inter)
    report.update(cases=agg, ratios=info, targets=targets)
    order = [_key(m, o) for m, o in report["cases_run"]]
    table = case_table(agg, order, batch["tokens"], inter)
    rlines = ratio_lines(info, targets, with_inter)

    loads = [(r.get("load_before"), r.get("load_after")) for r in records if r.get("load_before") is not None]
    mem_what = "peak RSS" if cfg["device"] == "cpu" else "torch.cuda.max_memory_allocated"
    md = [
        f"# Training step benchmark ({cfg['device']})",
        "",
        "Produced by:",
        "",
        "```bash",
        report["command"],
        *report.get("more_commands", []),
        "```",
        "",
        f"- date: {env['date']}",
        f"- torch {env['torch']}, transformers {env['transformers']}, TRL {env['trl'] or 'not installed'}, "
        f"peft {env['peft']}, accelerate {env['accelerate']}, datasets {env['datasets']}, Python {env['python']}",
        f"- CPU: {env['cpu']}, {env['cpu_cores']} cores, {env['mem_total_gib']} GiB RAM; {cfg['threads']} torch "
        "threads per case" + (f"; GPU: {env['gpu']}" if env.get("gpu") else ""),
        f"- model: `{cfg['model']}` in fp32; batch {batch['batch_size']} x {batch['seq_len']} tokens from "
        f"{batch['source']} ({batch['records_used']} records, ids sha256 {batch['sha256_16']}); labels -100 on the "
        f"first {batch['prompt_len']} positions of each row, so {batch['loss_tokens']} loss tokens per step after the "
        "shift",
        f"- a step: forward + backward + `torch.optim.AdamW` step (lr {report['lr']:g}, weight decay 0, gradients set "
        f"to None after it); {report['warmup']} warm-up + {report['repeats']} timed step(s) per case, "
        f"{report['rounds']} round(s) (the list of cases run again in reverse order); step time = median (over "
        "rounds: median of the rounds' medians), `fastest step` = the fastest timed step of all rounds; "
        "tokens/s = batch tokens / median step time",
        f"- memory: {mem_what} above the baseline taken after the model, the optimizer with its AdamW state "
        "(built by a zero-learning-rate step on zero gradients), the batch and (TRL) the trainer were built and "
        "freed heap memory was returned to the kernel; `peak MiB` over the timed steps (the mark reset after the "
        "warm-up), `first-step peak MiB` over the warm-up step, both the largest over the rounds; `baseline MiB` "
        "is that baseline (the whole process)",
        "- each case in its own subprocess, one after another"
        + (f"; load average (1 min) before/after the cases ranged {min(a for a, _ in loads):.1f}-"
           f"{max(max(a, b) for a, b in loads):.1f}" if loads else ""),
    ]
    if inter is not None:
        md.append(
            "- interleaved timing (time only): one more subprocess with one model and optimizer runs every case's "
            f"step in turn, one warm-up step per case then {inter.get('rounds')} round(s), each round starting one "
            "case later; `interleaved step s` is a case's median step there, and the `interleaved, paired per "
            "round` ratios are medians over the rounds of the ratio between the two cases' steps of the same "
            "round, so load from other processes falls on both alike. Time targets are judged on these paired "
            "ratios" + ("" if with_inter else f" (this run: {inter.get('status')} — {inter.get('note', '')})"))
    md += [
        "",
        "Cases: `fused/<objective>` = `patch_fused_loss(model, objective)` (no logits tensor); `plain/<objective>` = "
        "`patch_fused_loss(model, objective, fused=False)` (LM head over every position, then the same loss); "
        "`trl/dft` = TRL's `SFTTrainer` with `SFTConfig(loss_type=\"dft\", completion_only_loss=True, "
        f"max_length={batch['seq_len']}, packing=False, gradient_checkpointing=False, bf16=False)` on the same "
        "model, batch (pre-tokenised `input_ids` + `completion_mask`; TRL's collated `input_ids` and `labels` are "
        "checked equal to the benchmark's) and optimizer, timed as `trainer.training_step` + the optimizer step; "
        "`decoder/-` = the decoder alone with a trivial loss on its hidden states (no LM head) + the optimizer "
        "step, the part every case shares. Forward/backward/optimizer columns are medians over the timed steps "
        "(TRL: one `training_step`).",
        "",
        table,
        "",
        *rlines,
        "",
    ]
    met = [t for t in targets if t["met"]]
    md.append(f"Targets met: {len(met)} of {len(targets)} (time judged on the "
              + ("interleaved paired ratios" if with_inter else "median steps") + ", memory on the peaks).")
    notes = [f"- `{_key(r['method'], r['objective'])}` round {r['round']}: {r['status']} — {r.get('note', '')}"
             for r in records if r.get("status") != "ok"]
    if notes:
        md += ["", *notes]
    if report.get("notes"):
        md += ["", "## Notes", ""] + [n if n.startswith(("-", "#", "|")) else f"- {n}" for n in report["notes"]]
    return table, rlines, "\n".join(md) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="model spec for deft's load_model (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--prompt-len", type=int, default=None,
                    help="positions without loss at the start of each row (default: seq_len / 4)")
    ap.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES),
                    help="objectives of the fused and plain cases (default: %(default)s)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {', '.join(METHODS)} (default: all; trl only when installed; "
                         "with trl, a fused dft case is added as its same-objective peer)")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per case (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per case before timing")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the whole list of cases this many times, alternating its order (load on a shared "
                         "machine then hits every case alike); per case the median of the rounds' medians")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per case")
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--seed", type=int, default=0, help="seed of the FigFont records and of torch")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/train_step_<device>.json)")
    ap.add_argument("--markdown", default=None, help="markdown report (default: next to --out)")
    ap.add_argument("--csv", default=None, help="optional CSV, one row per case and round")
    ap.add_argument("--note", action="append", default=None,
                    help="a line for the report's Notes section (repeatable; kept in the JSON)")
    ap.add_argument("--render", default=None, metavar="JSON",
                    help="do not measure: rebuild the tables and the markdown from a results file of this script "
                         "(with --note, the notes are replaced)")
    ap.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                    help="after the cases, time every case's step in turn in one more subprocess for ROUNDS rounds "
                         "(time only; ratios paired per round, the time targets judged on them)")
    ap.add_argument("--add-interleaved", default=None, metavar="JSON",
                    help="run only the interleaved timing (--interleave ROUNDS, default 3) for the cases of an "
                         "existing results file and add it to that file and its markdown")
    ap.add_argument("--_case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._case is not None:
        case = json.loads(args._case)
        result = run_interleaved(case) if case.get("method") == "interleaved" else run_case(case)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + list(
        sys.argv[1:] if argv is None else argv))
    if args.render or args.add_interleaved:
        src = Path(args.render or args.add_interleaved)
        report = json.loads(src.read_text())
        if args.note is not None:
            report["notes"] = args.note
        report.setdefault("config", {"model": args.model, "device": report["environment"]["device"],
                                     "threads": report["environment"]["torch_threads"], "seed": args.seed})
        if "cases_run" not in report:  # the order of the first round
            first = [(r["method"], r["objective"]) for r in report["records"] if r.get("round", 0) == 0]
            report["cases_run"] = list(dict.fromkeys(first))
        if args.add_interleaved:
            cfg, b = report["config"], report["batch"]
            batch = build_batch(cfg["model"], b["batch_size"], b["seq_len"], b["prompt_len"], cfg["seed"])
            if batch["sha256_16"] != b["sha256_16"]:
                raise SystemExit(f"the rebuilt batch differs from the one in {src} ({batch['sha256_16']} != "
                                 f"{b['sha256_16']})")
            ok = {_key(r["method"], r["objective"]) for r in report["records"] if r.get("status") == "ok"}
            cases = [c for c in report["cases_run"] if _key(*c) in ok]
            base = dict(model=cfg["model"], device=cfg["device"], threads=cfg["threads"], seed=cfg["seed"],
                        lr=report["lr"], seq_len=b["seq_len"], prompt_len=b["prompt_len"])
            report["interleaved"] = interleaved_timing(batch, cases, base, args.interleave or 3, args.timeout)
            report.setdefault("more_commands", []).append(command)
        out = Path(args.out) if args.out else src
        md_path = Path(args.markdown) if args.markdown else out.with_suffix(".md")
        table, rlines, md = render(report)
        out.write_text(json.dumps(report, indent=1))
        md_path.write_text(md)
        print(table + "\n\n" + "\n".join(rlines))
        print(f"wrote {out}, {md_path}")
        return 0

    import signal

    signal.signal(signal.SIGTERM, terminate)

    prompt_len = args.prompt_len if args.prompt_len is not None else args.seq_len // 4
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}: choose from {', '.join(METHODS)}")
    cases = [(m, o) for m in ("fused", "plain") if m in methods for o in objectives]
    if "trl" in methods:
        if "fused" in methods and "dft" not in objectives:
            cases.append(("fused", "dft"))
        cases.append(("trl", "dft"))
    if "decoder" in methods:
        cases.append(("decoder", "-"))
    trl_missing = "trl" in methods and importlib.util.find_spec("trl") is None

    out = Path(args.out or ROOT / "benchmarks" / "results" / f"train_step_{args.device}.json")
    md_path = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    for p in (out, md_path):
        p.parent.mkdir(parents=True, exist_ok=True)

    env = environment(args.device, args.threads)
    print(f"# {command}\n# {env}", flush=True)
    batch = build_batch(args.model, args.batch_size, args.seq_len, prompt_len, args.seed)
    tokens = args.batch_size * args.seq_len
    tmp = Path(tempfile.mkdtemp(prefix="deft-train-step-batch-"))
    batch_file = tmp / "batch.json"
    batch_file.write_text(json.dumps(batch))
    batch_info = {"source": f"figfont records, seed {args.seed}, chat template, concatenated and cut into rows",
                  "batch_size": args.batch_size, "seq_len": args.seq_len, "prompt_len": prompt_len,
                  "tokens": tokens, "loss_tokens": batch["loss_tokens"], "records_used": batch["records_used"],
                  "sha256_16": batch["sha256_16"]}
    print(f"# batch: {batch_info}", flush=True)

    records: list[dict] = []
    report = {"command": command, "environment": env, "batch": batch_info, "objectives": objectives,
              "methods": methods, "cases_run": cases, "repeats": args.repeats, "warmup": args.warmup,
              "rounds": args.rounds, "lr": args.lr,
              "config": {"model": args.model, "device": args.device, "threads": args.threads, "seed": args.seed},
              "notes": args.note or [], "records": records}

    def save():
        out.write_text(json.dumps(report, indent=1))

    base = dict(model=args.model, device=args.device, threads=args.threads, seed=args.seed, lr=args.lr,
                seq_len=args.seq_len, prompt_len=prompt_len, repeats=args.repeats, warmup=args.warmup,
                batch_file=str(batch_file))
    try:
        for rnd in range(args.rounds):
            for method, objective in (cases if rnd % 2 == 0 else cases[::-1]):
                rec = dict(method=method, objective=objective, round=rnd)
                if method == "trl" and trl_missing:
                    res = {"status": "n/a", "note": "trl is not importable in this environment (pip install trl)"}
                else:
                    load = os.getloadavg()[0]
                    res = _run_child(dict(base, method=method, objective=objective), args.timeout)
                    res["load_before"], res["load_after"] = round(load, 2), round(os.getloadavg()[0], 2)
                rec.update(res)
                records.append(rec)
                save()
                if res["status"] == "ok":
                    msg = (f"{res['time_s']:8.2f} s/step  {tokens / res['time_s']:7.0f} tok/s  "
                           f"peak +{res['peak_bytes'] / MiB:7.0f} MiB  loss {res['loss_first']:.5f}  "
                           f"load {res['load_before']}->{res['load_after']}")
                else:
                    msg = f"{res['status']}: {res.get('note', '')}"
                print(f"round {rnd}  {_key(method, objective):>12}  {msg}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.interleave > 0:
        ok = {_key(r["method"], r["objective"]) for r in records if r.get("status") == "ok"}
        report["interleaved"] = interleaved_timing(batch, [c for c in cases if _key(*c) in ok], base,
                                                   args.interleave, args.timeout)
        save()
    table, rlines, md = render(report)
    save()
    print("\n" + table + "\n\n" + "\n".join(rlines), flush=True)

    if args.csv:
        fields = ["method", "objective", "round", "status", "time_s", "time_min_s", "peak_bytes", "peak_first_bytes",
                  "base_bytes", "loss_first", "times_s", "load_before", "load_after", "wall_s", "note"]
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for rec in records:
                row = dict(rec)
                if "times_s" in row:
                    row["times_s"] = " ".join(f"{t:.3f}" for t in row["times_s"])
                w.writerow(row)

    md_path.write_text(md)
    targets = report["targets"]
    print(f"targets met: {sum(1 for t in targets if t['met'])} of {len(targets)}")
    for t in targets:
        print(f"  {t['what']}: {_fx(t['value'], 3)} (target {t['target']}) "
              f"{'n/a' if t['met'] is None else ('met' if t['met'] else 'MISSED')}")
    print(f"wrote {out}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
