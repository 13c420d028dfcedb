#!/usr/bin/env python
"""Time and peak memory of the fused token loss, side by side with what it replaces.

For each shape (an LM head: hidden size H, vocabulary V, N tokens) and each objective, four
methods run one forward + backward of the loss with respect to the hidden states and the
LM-head weight:

* ``fused``     - ``deft.fused_token_loss(hidden, weight, labels, objective, reduction="sum")``;
* ``plain``     - ``deft.token_loss(hidden @ weight.T, labels, objective, reduction="sum")``;
* ``reference`` - the reference trainer's formulation (veRL SFT trainer with ``objective_trans``):
  full logits, full fp32 ``log_softmax`` (and, for DEFT / EAFT, a full fp32 ``softmax``) over
  every position, the per-token loss multiplied by the loss mask, summed;
* ``floor``     - only the three matrix products the fused loss cannot avoid,
  ``z = h_c @ W.T``, ``dh_c = z @ W`` and ``dW += z.T @ h_c``, in the fused loss's chunks, over
  the same loss tokens (``z`` stands in for the logit gradient: no elementwise work at all).

On CUDA a ``liger`` method (Liger-Kernel's fused linear cross entropy, for ``nll`` and, with
token scaling, ``dft``) is available as a peer when ``liger_kernel`` is installed.

Every (shape, objective, method) case runs in its own subprocess so that its peak memory is its
own: on CPU the peak resident set size above the resident size right after the inputs were built
(the kernel's high-water mark is reset at that point through ``/proc/self/clear_refs``); on CUDA
``torch.cuda.max_memory_allocated`` above the allocation after the inputs. A case that runs out
of memory, is killed or exceeds ``--timeout`` is recorded as such; a full-logits case whose
estimated memory exceeds the available memory is skipped and says so.

Results go to JSON, CSV and a markdown table; see ``benchmarks/README.md``.

    python benchmarks/fused_loss.py --shapes tiny                       # sanity check, seconds
    python benchmarks/fused_loss.py --shapes smollm2,qwen1.5b:repeats=1:warmup=0 \\
        --markdown docs/benchmarks/fused_loss_cpu.md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

from casekit import (  # benchmarks/casekit.py: per-case processes and memory readings
    MiB, RESULT_TAG, environment_info, peak_rss_bytes, read_status_kib, reset_peak_rss, run_case_process, terminate,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (H, V, N, whether the "against the reference" targets apply)
SHAPES = {
    "tiny": (64, 1000, 256, False),
    "smollm2": (576, 49152, 4096, True),
    "qwen1.5b": (1536, 151936, 2048, False),
}
SHAPE_TITLES = {
    "tiny": "tiny sanity shape",
    "smollm2": "SmolLM2 head",
    "qwen1.5b": "Qwen2.5-1.5B head",
}
DEFAULT_OBJECTIVES = ["nll", "p", "power", "cayley", "deft", "eaft", "label_smoothing", "kd"]
METHODS = ["fused", "plain", "reference", "floor", "liger"]
DEFAULT_METHODS = ["fused", "plain", "reference", "floor"]
# objectives the reference formulation below knows (the reference trainer's own names in brackets
# where it has them)
REFERENCE_OBJECTIVES = {"nll", "p", "dft", "power", "cayley", "cayley_floor", "deft", "eaft",
                        "label_smoothing", "kd"}
LIGER_OBJECTIVES = {"nll", "dft"}

IGNORE_INDEX = -100
LOGIT_STD = 3.0          # spread of the random part of the logits
CONFIDENT_SHARE = 0.6    # positions whose label logit gets a margin (a trained model's confident tokens)
IGNORED_SHARE = 0.1      # positions with the ignore index (prompt / padding)
MARGIN = (4.0, 20.0)     # range of that margin, in logit units
POWER_ALPHA = 0.5        # deft's `power` default, the reference's GeneralFamily-0.5
EAFT_K, EAFT_GAMMA = 20, 1.0
LABEL_SMOOTHING = 0.1

TIME_TARGET = 1.25       # gate objectives: fused time <= 1.25 x floor
MEM_TARGET = 1.5         # fused peak above inputs <= 1.5 x (dW + dh + one chunk of logits)
REF_SPEEDUP_TARGET = 2.0
REF_MEMORY_TARGET = 8.0



# --------------------------------------------------------------------------------------------
# inside a case subprocess
# --------------------------------------------------------------------------------------------

def chunk_rows(m: int, H: int, V: int, objective: str) -> int:
    """Rows per chunk the fused loss picks for ``m`` loss tokens (the same for every objective)."""
    from deft.fused import auto_chunk_size

    return auto_chunk_size(m, H, V)


def make_inputs(H: int, V: int, N: int, seed: int, teacher: bool):
    """Hidden states, LM-head weight and labels on the CPU, fp32, reproducible from ``seed``.

    Logits ``hidden @ weight.T`` have a random part of standard deviation ``LOGIT_STD``; for
    ``CONFIDENT_SHARE`` of the positions the label's logit is lifted by a margin drawn from
    ``MARGIN`` (so ``p`` ranges from tiny to near 1, as for a trained model on its SFT data), the
    other labels are uniform, and ``IGNORED_SHARE`` of the positions carry the ignore index.
    The teacher (``kd``) shares the weight and sees perturbed hidden states.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(V, H, generator=g)
    weight.mul_(LOGIT_STD / math.sqrt(H))
    hidden = torch.randn(N, H, generator=g)
    labels = torch.randint(0, V, (N,), generator=g)
    u = torch.rand(N, generator=g)
    confident = (u < CONFIDENT_SHARE).nonzero().squeeze(1)
    margin = MARGIN[0] + (MARGIN[1] - MARGIN[0]) * torch.rand(confident.numel(), generator=g)
    for s in range(0, confident.numel(), 1024):  # small temporaries only
        idx = confident[s:s + 1024]
        wy = weight.index_select(0, labels[idx])
        hidden[idx] += (margin[s:s + 1024] / wy.pow(2).sum(-1)).unsqueeze(1) * wy
    labels[u >= 1.0 - IGNORED_SHARE] = IGNORE_INDEX
    teacher_hidden = None
    if teacher:
        teacher_hidden = hidden + 0.5 * torch.randn(N, H, generator=g)
    return hidden, weight, labels, teacher_hidden


def reference_loss(objective: str, hidden, weight, labels, teacher_hidden):
    """One forward + backward the way the reference trainer does it (``objective_trans``):
    logits for every position, full fp32 ``log_softmax`` (``F.cross_entropy`` for NLL), a full
    fp32 ``softmax`` where the objective needs the distribution (DEFT's concentration, EAFT's
    top-k entropy), the per-token loss times the loss mask, summed. Every intermediate stays
    referenced until backward, as in the trainer's loss function."""
    import torch
    import torch.nn.functional as F

    logits = hidden @ weight.T
    mask = (labels != IGNORE_INDEX).to(torch.float32)
    safe = labels.clamp_min(0)
    extra = []
    if objective == "nll":  # "original": nn.CrossEntropyLoss(reduction="none")
        per_token = F.cross_entropy(logits, labels, reduction="none", ignore_index=IGNORE_INDEX)
    else:
        log_probs = F.log_softmax(logits.float(), dim=-1)
        logp = log_probs.gather(1, safe.unsqueeze(-1)).squeeze(-1)
        p = logp.exp()
        if objective == "p":
            per_token = 1 - p
        elif objective == "dft":
            per_token = -p.detach() * logp
        elif objective == "power":  # "GeneralFamily-0.5"
            per_token = -(torch.exp(POWER_ALPHA * logp) - 1) / POWER_ALPHA
        elif objective in ("cayley", "cayley_floor"):  # "Cayley_Trans" (batch-floored focus)
            p_label = p.detach()
            valid = mask.bool()
            floor = 0.5 * (p_label[valid].mean() if valid.any() else p_label.new_zeros(()))
            dist = 1.0 - p_label + 1e-8
            local = (1.0 - dist) / (1.0 + dist + 1e-8)
            alpha = (floor + (1.0 - floor) * local).clamp(0.001, 1.0).detach()
            per_token = -(torch.exp(alpha * logp) - 1) / (alpha + 1e-8)
        elif objective == "deft":  # "DEFT": concentration of the full softmax
            probs = F.softmax(logits.float(), dim=-1)
            alpha = probs.pow(2).sum(-1).detach()
            extra.append(probs)
            per_token = -(torch.exp(alpha * logp) - 1) / (alpha + 1e-6)
        elif objective == "eaft":  # entropy of the renormalised top-k of the full softmax
            probs = F.softmax(logits.float(), dim=-1)
            top = probs.topk(EAFT_K, dim=-1).values
            q = top / top.sum(-1, keepdim=True)
            ent = -(q * q.clamp_min(1e-30).log()).sum(-1)
            w = (ent / math.log(EAFT_K)).clamp(0, 1).pow(EAFT_GAMMA).detach()
            extra.append(probs)
            per_token = -w * logp
        elif objective == "label_smoothing":
            per_token = -((1 - LABEL_SMOOTHING) * logp + LABEL_SMOOTHING * log_probs.mean(-1))
        elif objective == "kd":
            with torch.no_grad():
                teacher_probs = F.softmax((teacher_hidden @ weight.T).float(), dim=-1)
            extra.append(teacher_probs)
            per_token = -(teacher_probs * log_probs).sum(-1)
        else:
            raise ValueError(f"no reference formulation for objective '{objective}'")
    loss = (per_token * mask).sum()
    loss.backward()
    del extra
    return loss


def _build_step(case, hidden, weight, labels, teacher_hidden):
    """A function running one forward + backward of the case's method; returns the loss."""
    import torch

    import deft

    method, objective = case["method"], case["objective"]
    kd_like = "teacher" in deft.parse_objective(objective).needs

    if method == "fused":
        extra = dict(teacher_hidden=teacher_hidden, teacher_weight=weight.detach()) if kd_like else {}

        def step():
            loss = deft.fused_token_loss(hidden, weight, labels, objective, reduction="sum", **extra)
            loss.backward()
            return loss
        return step

    if method == "plain":
        def step():
            logits = hidden @ weight.T
            extra = {}
            if kd_like:
                with torch.no_grad():
                    extra["teacher_logits"] = teacher_hidden @ weight.T
            loss = deft.token_loss(logits, labels, objective, reduction="sum", **extra)
            loss.backward()
            return loss
        return step

    if method == "reference":
        def step():
            return reference_loss(objective, hidden, weight, labels, teacher_hidden)
        return step

    if method == "floor":
        keep = (labels != IGNORE_INDEX).nonzero().squeeze(1)
        h = hidden.detach().index_select(0, keep)
        w = weight.detach()
        m, V, H = h.shape[0], w.shape[0], w.shape[1]
        chunk = case.get("chunk_size") or chunk_rows(m, H, V, objective)  # the fused loss's chunks

        def step():
            step.out = None  # free the previous step's gradients first, like .grad = None
            dw = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
            dh = torch.empty_like(h)
            for s in range(0, m, chunk):
                hc = h[s:s + chunk]
                z = hc @ w.T
                torch.mm(z, w, out=dh[s:s + chunk])
                if z.dtype == torch.float32:
                    dw.addmm_(z.T, hc)
                else:
                    dw += (z.T @ hc).float()
                del z
            step.out = (dw, dh)  # keep both gradients alive until the next step, like .grad
            return dw.new_zeros(())
        step.out = None
        return step

    if method == "liger":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        kwargs = dict(reduction="sum", ignore_index=IGNORE_INDEX)
        if objective == "dft":
            kwargs["use_token_scaling"] = True
        elif objective != "nll":
            raise ValueError("the liger peer covers nll and dft only")
        fn = LigerFusedLinearCrossEntropyLoss(**kwargs)

        def step():
            loss = fn(weight, hidden, labels)
            loss = getattr(loss, "loss", loss)
            loss.backward()
            return loss
        return step

    raise ValueError(f"unknown method {method!r}")


def run_case(case: dict) -> dict:
    import torch

    torch.set_num_threads(int(case["threads"]))
    device = torch.device(case["device"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[case["dtype"]]
    cuda = device.type == "cuda"
    H, V, N = case["H"], case["V"], case["N"]
    objective, method = case["objective"], case["method"]

    import deft

    kd_like = "teacher" in deft.parse_objective(objective).needs
    hidden, weight, labels, teacher_hidden = make_inputs(H, V, N, case["seed"], kd_like)
    hidden = hidden.to(device=device, dtype=dtype).requires_grad_(True)
    weight = weight.to(device=device, dtype=dtype).requires_grad_(True)
    labels = labels.to(device)
    if teacher_hidden is not None:
        teacher_hidden = teacher_hidden.to(device=device, dtype=dtype)
    step = _build_step(case, hidden, weight, labels, teacher_hidden)
    paired = bool(case.get("paired_floor")) and method == "fused"
    floor = _build_step(dict(case, method="floor"), hidden, weight, labels, teacher_hidden) if paired else None

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    import gc

    gc.collect()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        hwm_reset = True
    else:
        hwm_reset = reset_peak_rss()
        base = (read_status_kib("VmRSS") or 0) * 1024

    def one(fn):
        hidden.grad = None
        weight.grad = None
        sync()
        t0 = time.perf_counter()
        loss = fn()
        sync()
        return time.perf_counter() - t0, float(loss.detach())

    def read_peak():
        sync()
        return int((torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()) - base)

    if case.get("profile"):
        for _ in range(case["warmup"]):
            one(step)
        return {"profile": _profile(lambda: one(step), cuda)}

    # Peak memory is that of the first iteration(s) of this method alone (every iteration
    # allocates the same way). For the fused method the timed iterations then alternate with the
    # floor's three products on the same inputs, so that the fused / floor ratio is taken from
    # adjacent pairs and load on the machine hits both alike.
    warm = [one(step) for _ in range(case["warmup"])]
    peak = read_peak() if warm else None
    timed, floor_times = [], []
    for i in range(case["repeats"]):
        timed.append(one(step))
        if peak is None:
            peak = read_peak()
        if paired:
            floor_times.append(one(floor)[0])
            floor.out = None
    if peak is None:
        peak = read_peak()
    times = [t for t, _ in timed]
    out = {
        "status": "ok",
        "times_s": times,
        "warmup_times_s": [t for t, _ in warm],
        "time_s": statistics.median(times) if times else None,
        "time_min_s": min(times) if times else None,
        "peak_bytes": peak,
        "base_bytes": int(base),
        "peak_reset": hwm_reset,
        "loss": (timed or warm)[-1][1] if (timed or warm) else None,
        "loss_tokens": int((labels != IGNORE_INDEX).sum()),
    }
    if paired and floor_times:
        out["paired_floor_times_s"] = floor_times
        out["paired_floor_time_s"] = statistics.median(floor_times)
        out["paired_ratio"] = statistics.median(t / f for t, f in zip(times, floor_times))
    return out


def _profile(one, cuda: bool) -> dict:
    """Profile one iteration; split self time into matrix products and everything else."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        wall, _ = one()
    rows = []
    for ev in prof.key_averages():
        self_us = (ev.self_device_time_total if cuda else ev.self_cpu_time_total)
        rows.append((ev.key, ev.count, self_us))
    rows.sort(key=lambda r: -r[2])
    total = sum(r[2] for r in rows)
    mm_ops = {"aten::mm", "aten::addmm", "aten::addmm_"}  # the floor's products (row dots via bmm are not)
    mm = sum(r[2] for r in rows if r[0] in mm_ops)
    return {
        "wall_s": wall,
        "self_total_s": total / 1e6,
        "matmul_s": mm / 1e6,
        "other_s": (total - mm) / 1e6,
        "top": [{"op": k, "calls": c, "self_s": t / 1e6} for k, c, t in rows[:25]],
    }


# --------------------------------------------------------------------------------------------
# the parent process
# --------------------------------------------------------------------------------------------

def parse_shapes(spec: str, repeats: int, warmup: int) -> list[dict]:
    """``name[:N=...][:repeats=...][:warmup=...]`` or ``HxVxN`` items, comma-separated."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, *opts = item.split(":")
        if name in SHAPES:
            H, V, N, ref_target = SHAPES[name]
        else:
            try:
                H, V, N = (int(x) for x in name.lower().split("x"))
            except ValueError:
                raise SystemExit(f"unknown shape {name!r}: use {', '.join(SHAPES)} or HxVxN") from None
            ref_target = False
        shape = dict(name=name, H=H, V=V, N=N, repeats=repeats, warmup=warmup, ref_target=ref_target)
        for opt in opts:
            key, _, value = opt.partition("=")
            if key not in ("N", "repeats", "warmup"):
                raise SystemExit(f"shape option {opt!r}: expected N=, repeats= or warmup=")
            shape[key] = int(value)
        out.append(shape)
    return out


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def full_logits_estimate(shape: dict, objective: str, method: str, itemsize: int) -> int:
    """Rough peak of a full-logits method: inputs, both gradients and ``k`` ``[N, V]`` fp32
    buffers (logits, log-probabilities, probabilities, their gradients)."""
    H, V, N = shape["H"], shape["V"], shape["N"]
    k = 5 + (2 if objective == "kd" else 0)
    return k * N * V * 4 + 2 * V * H * itemsize + 3 * N * H * itemsize


def budget_bytes(shape: dict, itemsize: int, objective: str = "nll", loss_tokens: int | None = None):
    """(dW + dh + one chunk of fp32 logits, chunk rows) for the memory target, with the chunk
    the fused loss uses for this objective (distribution objectives get smaller chunks)."""
    sys.path.insert(0, str(ROOT / "src"))
    H, V, N = shape["H"], shape["V"], shape["N"]
    m = loss_tokens or round(N * (1 - IGNORED_SHARE))
    chunk = chunk_rows(m, H, V, objective)
    return V * H * 4 + N * H * itemsize + chunk * V * 4, chunk


def _wait_for_interpreter(limit: float = 900.0) -> None:
    """Wait while the interpreter is missing (e.g. a virtual environment being rebuilt)."""
    t0 = time.time()
    while not os.path.exists(sys.executable) and time.time() - t0 < limit:
        time.sleep(10)


def run_child(case: dict, timeout: float, retries: int = 1) -> dict:
    """Run one case in a fresh interpreter; retry once when the interpreter or its packages
    were unavailable (an environment rebuilt under a long run), not when the case failed."""
    for attempt in range(retries + 1):
        _wait_for_interpreter()
        try:
            res = _run_child_once(case, timeout)
        except FileNotFoundError as exc:
            res = {"status": "error", "note": f"interpreter unavailable: {exc}", "retry": True}
        if not res.pop("retry", False) or attempt == retries:
            return res
        time.sleep(60)
    return res


def _run_child_once(case: dict, timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    res = run_case_process(str(Path(__file__).resolve()), case, timeout, env, note_chars=300)
    res.pop("stderr_tail", None)
    return res


def _fmt_t(r):
    if not r:
        return "-"
    if r["status"] == "ok":
        return f"{r['time_s']:.2f}"
    return r["status"]


def _fmt_m(r):
    if not r:
        return "-"
    if r["status"] == "ok":
        return f"{r['peak_bytes'] / MiB:.0f}"
    return r["status"]


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def _fx(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}x"


def analyse(shape: dict, results: dict, objectives: list[str], itemsize: int) -> list[dict]:
    """One row per objective with the ratios and the target verdicts."""
    floors = [r for r in results.get(("*", "floor"), []) if r.get("status") == "ok"]
    floor_t = min((r["time_s"] for r in floors), default=None)
    floor_m = max((r["peak_bytes"] for r in floors), default=None)
    rows = []
    for obj in objectives:
        get = lambda m: (results.get((obj, m)) or [None])[0]  # noqa: E731
        fu, pl, rf, lg = get("fused"), get("plain"), get("reference"), get("liger")
        ok = lambda r: r is not None and r.get("status") == "ok"  # noqa: E731
        ft = fu["time_s"] if ok(fu) else None
        fm = fu["peak_bytes"] if ok(fu) else None
        budget, chunk = budget_bytes(shape, itemsize, obj, fu.get("loss_tokens") if fu else None)
        paired = ok(fu) and fu.get("paired_ratio") is not None
        row = dict(objective=obj, fused=fu, plain=pl, reference=rf, liger=lg,
                   floor_time=fu["paired_floor_time_s"] if paired else floor_t, floor_mem=floor_m,
                   floor_alone_time=floor_t, gate=_is_gate(obj),
                   t_floor=fu["paired_ratio"] if paired else _ratio(ft, floor_t),
                   t_plain=_ratio(pl["time_s"] if ok(pl) else None, ft),
                   t_ref=_ratio(rf["time_s"] if ok(rf) else None, ft),
                   t_ref_best=_ratio(rf["time_min_s"] if ok(rf) else None, fu["time_min_s"] if ok(fu) else None),
                   m_plain=_ratio(pl["peak_bytes"] if ok(pl) else None, fm),
                   m_ref=_ratio(rf["peak_bytes"] if ok(rf) else None, fm),
                   m_budget=_ratio(fm, budget), budget=budget, chunk=chunk)
        verdicts = []
        if row["gate"] and row["t_floor"] is not None:
            verdicts.append(("time<=1.25x floor", row["t_floor"] <= TIME_TARGET))
        if row["m_budget"] is not None:
            verdicts.append(("mem<=1.5x budget", row["m_budget"] <= MEM_TARGET))
        if shape["ref_target"]:
            if row["t_ref"] is not None:
                verdicts.append((">=2x faster than ref", row["t_ref"] >= REF_SPEEDUP_TARGET))
            if row["m_ref"] is not None:
                verdicts.append((">=8x less mem than ref", row["m_ref"] >= REF_MEMORY_TARGET))
        row["verdicts"] = verdicts
        rows.append(row)
    return rows


def _is_gate(objective: str) -> bool:
    sys.path.insert(0, str(ROOT / "src"))
    import deft

    return deft.parse_objective(objective).kind == "gate"


def markdown_table(shape: dict, rows: list[dict], methods: list[str], itemsize: int) -> str:
    H, V, N = shape["H"], shape["V"], shape["N"]
    kinds = {}
    for r in rows:
        kinds.setdefault("gate" if r["gate"] else "distribution", (r["budget"], r["chunk"]))
    if len(set(kinds.values())) == 1:  # one chunk size for every objective kind
        kinds = {"all": next(iter(kinds.values()))}
    budgets = "; ".join(
        f"{kind} objectives: chunk {chunk} rows, budget dW + dh + one fp32 logits chunk = "
        f"{V * H * 4 / MiB:.0f} + {N * H * itemsize / MiB:.0f} + {chunk * V * 4 / MiB:.0f} = {budget / MiB:.0f} MiB"
        for kind, (budget, chunk) in kinds.items())
    lines = [
        f"### {SHAPE_TITLES.get(shape['name'], shape['name'])}: H={H}, V={V}, N={N}",
        "",
        f"{budgets[0].upper() + budgets[1:]}; full fp32 logits [N, V] = {N * V * 4 / MiB:.0f} MiB. "
        f"{shape['warmup']} warm-up + {shape['repeats']} timed iteration(s) per case, median. "
        "`floor s` is the floor timed in the fused case, each fused iteration followed by one floor "
        "iteration in the same chunks, and `fused / floor time` the median of those pairs' ratios"
        + ("" if rows[0]["floor_alone_time"] is None else
           f"; the floor in a case of its own (gate chunks), whose peak is the `floor MiB` column, took "
           f"{rows[0]['floor_alone_time']:.2f} s") + ".",
        "",
    ]
    has_liger = "liger" in methods
    tcols = ["fused", "plain", "reference", "floor"] + (["liger"] if has_liger else [])
    head = ["objective"] + [f"{m} s" for m in tcols] + [f"{m} MiB" for m in tcols] + [
        "fused / floor time", "ref / fused time", "same, fastest iterations", "ref / fused mem", "plain / fused mem",
        "fused mem / budget", "targets"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|")
    for r in rows:
        floor_t = "-" if r["floor_time"] is None else f"{r['floor_time']:.2f}"
        floor_m = "-" if r["floor_mem"] is None else f"{r['floor_mem'] / MiB:.0f}"
        tc = {m: _fmt_t(r[m]) for m in tcols if m != "floor"}
        mc = {m: _fmt_m(r[m]) for m in tcols if m != "floor"}
        tc["floor"], mc["floor"] = floor_t, floor_m
        marks = ", ".join(f"{name} {'met' if good else 'MISSED'}" for name, good in r["verdicts"]) or "-"
        cells = ([r["objective"] + ("" if r["gate"] else " (dist.)")] + [tc[m] for m in tcols]
                 + [mc[m] for m in tcols]
                 + [_fx(r["t_floor"]), _fx(r["t_ref"]), _fx(r["t_ref_best"]), _fx(r["m_ref"], 1), _fx(r["m_plain"], 1),
                    _fx(r["m_budget"]), marks])
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    for r in rows:
        for m in tcols:
            res = r.get(m)
            if res and res.get("status") != "ok" and res.get("note"):
                notes.append(f"- `{r['objective']}` / {m}: {res['status']} — {res['note']}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def environment(device: str) -> dict:
    import torch

    return environment_info(device, {"torch": torch.__version__}, torch.get_num_threads())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="smollm2,qwen1.5b",
                    help="comma-separated shapes: tiny (H=64, V=1000, N=256), smollm2 (576, 49152, 4096), "
                         "qwen1.5b (1536, 151936, 2048) or HxVxN; per-shape options after colons, e.g. "
                         "qwen1.5b:N=4096:repeats=1:warmup=0")
    ap.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES),
                    help="comma-separated objective specs (default: %(default)s)")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                    help=f"comma-separated subset of {', '.join(METHODS)} (default: %(default)s; "
                         "liger needs CUDA and liger_kernel)")
    ap.add_argument("--repeats", type=int, default=3, help="timed iterations per case (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations per case before timing")
    ap.add_argument("--floor-runs", type=int, default=1,
                    help="stand-alone floor cases per shape (first, and last of the shape; for its memory and "
                         "its own time); the fused / floor time ratio comes from floor iterations paired with "
                         "the fused ones inside each fused case")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                    help="input dtype (auto: fp32 on CPU, bf16 on CUDA)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per case before it is recorded as timeout")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/fused_loss_<device>.json)")
    ap.add_argument("--csv", default=None, help="CSV, one row per case (default: next to --out)")
    ap.add_argument("--markdown", default=None, help="markdown report with the tables (default: next to --out)")
    ap.add_argument("--profile", default=None, metavar="OBJECTIVE",
                    help="instead of the benchmark, profile one fused iteration of OBJECTIVE on the first "
                         "shape and print where the time goes")
    ap.add_argument("--no-paired-floor", action="store_true",
                    help="do not time the floor inside the fused cases (the fused / floor ratio then comes "
                         "from the separate floor case)")
    ap.add_argument("--update", action="store_true",
                    help="re-run the selected cases and replace them in the existing --out JSON (same shapes "
                         "and settings), then rewrite the reports; the JSON and markdown list the update")
    ap.add_argument("--render", default=None, metavar="JSON",
                    help="only rewrite the CSV and markdown (and the JSON's summary) from a results JSON")
    ap.add_argument("--_case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._case is None:
        import signal

        signal.signal(signal.SIGTERM, terminate)
    if args._case is not None:
        case = json.loads(args._case)
        result = run_case(case)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    if args.render:
        src = Path(args.render)
        report = json.loads(src.read_text())
        report["rendered_by"] = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + list(
            sys.argv[1:] if argv is None else argv))
        write_reports(report, src, Path(args.csv) if args.csv else src.with_suffix(".csv"),
                      Path(args.markdown) if args.markdown else src.with_suffix(".md"))
        return 0

    dtype = args.dtype if args.dtype != "auto" else ("fp32" if args.device == "cpu" else "bf16")
    itemsize = 4 if dtype == "fp32" else 2
    shapes = parse_shapes(args.shapes, args.repeats, args.warmup)
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}: choose from {', '.join(METHODS)}")
    if "liger" in methods and args.device != "cuda":
        raise SystemExit("the liger peer runs on CUDA only")
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + list(
        sys.argv[1:] if argv is None else argv))

    base = dict(device=args.device, dtype=dtype, threads=args.threads, seed=args.seed)

    if args.profile:
        shape = shapes[0]
        case = dict(base, **{k: shape[k] for k in ("H", "V", "N")}, objective=args.profile, method="fused",
                    repeats=0, warmup=max(1, shape["warmup"]), profile=True)
        res = run_child(case, args.timeout)
        if "profile" not in res:
            print(f"profiling failed: {res}")
            return 1
        prof = res["profile"]
        print(f"fused {args.profile} on {shape['name']} (H={shape['H']}, V={shape['V']}, N={shape['N']}): "
              f"wall {prof['wall_s']:.2f} s, profiled self time {prof['self_total_s']:.2f} s = "
              f"matrix products {prof['matmul_s']:.2f} s + other ops {prof['other_s']:.2f} s")
        for row in prof["top"]:
            print(f"  {row['op']:<40} {row['calls']:>6}  {row['self_s']:8.3f} s")
        return 0

    out = Path(args.out or ROOT / "benchmarks" / "results" / f"fused_loss_{args.device}.json")
    csv_path = Path(args.csv) if args.csv else out.with_suffix(".csv")
    md_path = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    for p in (out, csv_path, md_path):
        p.parent.mkdir(parents=True, exist_ok=True)

    env = environment(args.device)
    print(f"# {command}\n# {env}", flush=True)
    settings = dict(device=args.device, dtype=dtype, threads=args.threads, seed=args.seed, timeout_s=args.timeout)
    if args.update:
        if not out.exists():
            raise SystemExit(f"--update: {out} does not exist")
        report = json.loads(out.read_text())
        old_shapes = {s["name"]: s for s in report["shapes"]}
        for shape in shapes:
            old = old_shapes.get(shape["name"])
            if old is None or any(old[k] != shape[k] for k in ("H", "V", "N", "repeats", "warmup")):
                raise SystemExit(f"--update: shape {shape['name']} differs from the one in {out}")
        old_settings = report.get("settings", {})
        for key in ("device", "dtype", "threads", "seed"):
            if key in old_settings and old_settings[key] != settings[key]:
                raise SystemExit(f"--update: {key} differs from the one in {out}")
        report.setdefault("updates", []).append({"command": command, "date": env["date"]})
        records = report["records"]
    else:
        records = []
        report = {"command": command, "environment": env, "shapes": shapes, "objectives": objectives,
                  "methods": methods, "records": records, "settings": settings}

    def save():
        out.write_text(json.dumps(report, indent=1))

    def run(shape, objective, method):
        case = dict(base, **{k: shape[k] for k in ("H", "V", "N", "repeats", "warmup")},
                    shape=shape["name"], objective=objective, method=method,
                    paired_floor=method == "fused" and not args.no_paired_floor)
        rec = dict(shape=shape["name"], objective=objective, method=method)
        skip = None
        if method in ("plain", "reference"):
            need, avail = full_logits_estimate(shape, objective, method, itemsize), mem_available()
            if args.device == "cpu" and avail is not None and need > 0.8 * avail:
                skip = f"would need about {need / 2**30:.1f} GiB > 80% of the {avail / 2**30:.1f} GiB available"
        if method == "reference" and objective not in REFERENCE_OBJECTIVES:
            skip = "no reference formulation"
        if method == "liger" and objective not in LIGER_OBJECTIVES:
            skip = "not covered by the liger peer"
        if skip:
            res = {"status": "did not fit" if "GiB" in skip else "n/a", "note": skip}
        else:
            t0 = time.time()
            load = os.getloadavg()[0]
            res = run_child(case, args.timeout)
            res.setdefault("wall_s", time.time() - t0)
            res["load_before"], res["load_after"] = round(load, 2), round(os.getloadavg()[0], 2)
        rec.update(res)
        if args.update:  # the new measurement replaces the saved one(s) of this case
            records[:] = [r for r in records if (r["shape"], r["objective"], r["method"]) != (
                rec["shape"], rec["objective"], rec["method"])]
        records.append(rec)
        save()
        if res["status"] == "ok":
            msg = (f"{res['time_s']:8.3f} s (min {res['time_min_s']:.3f})  peak +{res['peak_bytes'] / MiB:8.1f} MiB"
                   f"  loss {res['loss']:.6g}")
        else:
            msg = f"{res['status']}: {res.get('note', '')}"
        print(f"{shape['name']:>9} {objective:>16} {method:>9}  {msg}", flush=True)
        return rec

    for shape in shapes:
        floor_runs = max(1, args.floor_runs) if "floor" in methods else 0
        if floor_runs:
            run(shape, "nll", "floor")
        for obj in objectives:
            for method in methods:
                if method != "floor":
                    run(shape, obj, method)
        for _ in range(floor_runs - 1):
            run(shape, "nll", "floor")
        for done, _, table in render_tables(report):
            if done["name"] == shape["name"]:
                print("\n" + table, flush=True)

    write_reports(report, out, csv_path, md_path)
    return 0


def render_tables(report: dict) -> list[tuple]:
    """``(shape, rows, markdown table)`` for every shape of ``report`` that has results."""
    settings = report.get("settings", {})
    device = settings.get("device", report["environment"].get("device", "cpu"))
    dtype = settings.get("dtype", "fp32" if device == "cpu" else "bf16")
    itemsize = 4 if dtype == "fp32" else 2
    tables = []
    for shape in report["shapes"]:
        results: dict = {}
        for rec in report["records"]:
            if rec["shape"] != shape["name"]:
                continue
            key = ("*", "floor") if rec["method"] == "floor" else (rec["objective"], rec["method"])
            results.setdefault(key, []).append(rec)
        if not results:
            continue
        objectives = [o for o in report["objectives"] if any(k[0] == o for k in results)]
        rows = analyse(shape, results, objectives, itemsize)
        if not rows:
            continue
        tables.append((shape, rows, markdown_table(shape, rows, report["methods"], itemsize)))
    return tables


def write_reports(report: dict, out: Path, csv_path: Path, md_path: Path) -> None:
    """Write the JSON (with the target summary), the CSV (one row per case) and the markdown."""
    records, env = report["records"], report["environment"]
    settings = report.get("settings", {})
    device = settings.get("device", env.get("device", "cpu"))
    dtype = settings.get("dtype", "fp32" if device == "cpu" else "bf16")
    threads = settings.get("threads", env.get("torch_threads"))
    tables = render_tables(report)

    fields = ["shape", "objective", "method", "status", "time_s", "time_min_s", "peak_bytes", "peak_mib",
              "base_bytes", "loss", "loss_tokens", "times_s", "warmup_times_s", "paired_floor_time_s",
              "paired_ratio", "wall_s", "load_before", "load_after", "note"]
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for rec in records:
            row = dict(rec)
            if "peak_bytes" in row:
                row["peak_mib"] = round(row["peak_bytes"] / MiB, 1)
            for key in ("times_s", "warmup_times_s"):
                if key in row:
                    row[key] = " ".join(f"{t:.3f}" for t in row[key])
            w.writerow(row)

    summary = []
    for shape, rows, _ in tables:
        for r in rows:
            for name, good in r["verdicts"]:
                summary.append((shape["name"], r["objective"], name, good))
    report["summary"] = [dict(shape=s, objective=o, target=n, met=g) for s, o, n, g in summary]
    rendered_by = report.pop("rendered_by", None)  # said in the markdown only
    out.write_text(json.dumps(report, indent=1))

    loads = [rec[k] for rec in records for k in ("load_before", "load_after") if rec.get(k) is not None]
    load_line = (f"- 1-minute load average seen at the cases' start and end: {min(loads):.1f} to "
                 f"{max(loads):.1f} on {env['cpu_cores']} cores (above the core count the machine was "
                 "shared with other jobs, which slows every method; ratios within a fused case are "
                 "paired, the others are not)") if loads else None
    md = [
        f"# Fused loss benchmark ({device})",
        "",
        "Produced by:",
        "",
        "```bash",
        report["command"],
        "```",
        "",
    ]
    for upd in report.get("updates", []):
        md += [f"Cases re-measured on {upd['date']} by:", "", "```bash", upd["command"], "```", ""]
    if rendered_by:
        md += [f"(tables rewritten from the saved results by `{rendered_by}`)", ""]
    md += [
        f"- date: {env['date']}",
        f"- torch {env['torch']}, Python {env['python']}",
        f"- CPU: {env['cpu']}, {env['cpu_cores']} cores, {env['mem_total_gib']} GiB RAM; "
        f"{threads} torch threads per case" + (f"; GPU: {env['gpu']}" if env.get("gpu") else ""),
        f"- inputs {dtype}; each case in its own subprocess; time = median of the timed forward + backward "
        f"iterations; memory = peak {'RSS' if device == 'cpu' else 'max_memory_allocated'} above "
        "the inputs",
    ]
    if load_line:
        md.append(load_line)
    md += [
        "",
        "Columns: seconds per forward + backward and peak MiB above the inputs of the fused loss, the plain "
        "full-logits path, the reference trainer's formulation and the matmul floor; ratios; targets "
        f"(gate objectives: fused time <= {TIME_TARGET}x floor; fused memory <= {MEM_TARGET}x the budget "
        f"dW + dh + one logits chunk; at the SmolLM2 shape: >= {REF_SPEEDUP_TARGET:.0f}x faster and "
        f">= {REF_MEMORY_TARGET:.0f}x less memory than the reference). `(dist.)` marks distribution objectives "
        "(closed-form gradient `c P - Q`, formed in row sub-blocks; `kd` also forms the teacher's logits, a fourth product).",
        "",
    ]
    for _, _, table in tables:
        md.append(table)
    met = sum(1 for *_, g in summary if g)
    md.append(f"Targets met: {met} of {len(summary)}.")
    missed = [f"{s}/{o}: {n}" for s, o, n, g in summary if not g]
    if missed:
        md += ["", "Missed: " + "; ".join(missed) + "."]
    md_path.write_text("\n".join(md) + "\n")
    print(f"targets met: {met} of {len(summary)}")
    for item in missed:
        print(f"  missed: {item}")
    print(f"wrote {out}, {csv_path}, {md_path}")


if __name__ == "__main__":
    sys.exit(main())
