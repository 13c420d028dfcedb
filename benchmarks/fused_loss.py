#!/usr/bin/env python
"""Time and peak memory of the fused token loss, side by side with what it replaces.

For each shape (an LM head: hidden size H, vocabulary V, N tokens) and objective, each method runs
forward + backward of the summed loss with respect to the hidden states and the head weight:

* ``fused``     - ``deft.fused_token_loss(..., impl="eager")`` (the chunked engine, eager step);
* ``compiled``  - ``deft.fused_token_loss(..., impl="compile")``: the same engine with the compiled
  gate step (gate objectives; the logits chunk in the inputs' dtype);
* ``plain``     - ``deft.token_loss(hidden @ weight.T, ...)`` (full logits, autograd);
* ``reference`` - the reference trainer's formulation (full fp32 ``log_softmax``, a full
  ``softmax`` for DEFT / EAFT / KD, per-token loss times the mask, summed);
* ``floor``     - only the three matrix products ``z = h_c W^T``, ``dh_c = z W``, ``dW += z^T h_c``
  in the fused loss's chunks (``z`` stands in for the logit gradient);
* ``liger``     - CUDA with ``liger_kernel``: Liger-Kernel's fused linear cross entropy (``nll``;
  ``dft`` through its token scaling).

On CPU every case runs in its own interpreter and its peak is the peak RSS above the inputs; on
CUDA the cases of one shape share an interpreter (``--group shape``) and each peak is
``max_memory_allocated`` above the inputs, reset between cases. The reports (JSON, CSV,
markdown) come from ``benchmarks/report.py``; see ``benchmarks/README.md``.

``--bench`` is the short paired regression run of ``make bench`` (the SmolLM2 and Qwen2.5-1.5B
heads; nll, deft, kd; fused, floor, reference): it prints its ratios beside those of the
committed results (``--against``, default ``benchmarks/results/fused_loss_cpu.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

from casekit import (MiB, RESULT_TAG, PeakMeter, add_run_args, child_env, command_line, environment_info,
                     mem_available, output_paths, run_cases, terminate)
from lm_head import IGNORE_INDEX, make_inputs, reference_loss
from report import compare_reports, format_profile, write_reports

ROOT = Path(__file__).resolve().parent.parent
# name -> (H, V, N, the device whose "against the reference" targets apply at the default N)
SHAPES = {
    "tiny": (64, 1000, 256, None),
    "smollm2": (576, 49152, 4096, "cpu"),
    "qwen1.5b": (1536, 151936, 2048, None),
    "qwen7b": (3584, 152064, 8192, "cuda"),
    "llama8b": (4096, 128256, 8192, None),
}
DEFAULT_OBJECTIVES = ["nll", "p", "power", "cayley", "deft", "eaft", "label_smoothing", "kd"]
METHODS = ["fused", "compiled", "plain", "reference", "floor", "liger"]
IMPL_OF = {"fused": "eager", "compiled": "compile"}  # the engine's methods and their gate step
# make bench: (option, value) the preset sets where the command line does not
BENCH = {"shapes": "smollm2:repeats=2,qwen1.5b:repeats=1", "objectives": "nll,deft,kd",
         "methods": "fused,floor,reference", "repeats": 2, "warmup": 1}
COMMITTED = ROOT / "benchmarks" / "results" / "fused_loss_cpu.json"
REFERENCE_OBJECTIVES = {"nll", "p", "dft", "power", "cayley", "cayley_floor", "deft", "eaft", "label_smoothing", "kd"}
LIGER_OBJECTIVES = {"nll", "dft"}


# ------------------------------------------------------------------ inside a case interpreter

def floor_step(hidden, weight, labels, chunk: int, teacher_hidden=None):
    """The three products in ``chunk``-row chunks over the loss tokens; ``step.out`` keeps the
    gradients alive until the next step, as ``.grad`` would. With ``teacher_hidden`` (an objective
    that needs a teacher, e.g. kd) a fourth product, the teacher's logits ``h_t W^T`` of the chunk,
    which such an objective cannot avoid either."""
    import torch

    keep = (labels != IGNORE_INDEX).nonzero().squeeze(1)
    h, w = hidden.detach().index_select(0, keep), weight.detach()
    ht = None if teacher_hidden is None else teacher_hidden.detach().index_select(0, keep)

    def step():
        step.out = None
        dw = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
        dh = torch.empty_like(h)
        for s in range(0, h.shape[0], chunk):
            hc = h[s:s + chunk]
            z = hc @ w.T
            if ht is not None:
                z.sub_(ht[s:s + chunk] @ w.T)  # the teacher's logits, used as the objective would use them
            torch.mm(z, w, out=dh[s:s + chunk])
            dw.addmm_(z.T, hc) if z.dtype == dw.dtype else dw.add_((z.T @ hc).float())
            del z
        step.out = (dw, dh)
        return dw.new_zeros(())
    step.out = None
    return step


def build_step(case: dict, hidden, weight, labels, teacher_hidden):
    """A function running forward + backward of the case's method and returning the loss."""
    import torch

    import deft
    from deft.fused import auto_chunk_size

    method, objective = case["method"], case["objective"]
    teacher = dict(teacher_hidden=teacher_hidden, teacher_weight=weight.detach()) if teacher_hidden is not None else {}

    def backward(loss):
        loss.backward()
        return loss
    if method in IMPL_OF:
        impl = IMPL_OF[method]
        return lambda: backward(deft.fused_token_loss(hidden, weight, labels, objective, reduction="sum", impl=impl,
                                                      **teacher))
    if method == "plain":
        def step():
            extra = {}
            if teacher:
                with torch.no_grad():
                    extra["teacher_logits"] = teacher_hidden @ weight.T
            return backward(deft.token_loss(hidden @ weight.T, labels, objective, reduction="sum", **extra))
        return step
    if method == "reference":
        return lambda: reference_loss(objective, hidden, weight, labels, teacher_hidden)
    if method == "floor":
        m = int((labels != IGNORE_INDEX).sum())
        return floor_step(hidden, weight, labels, case.get("chunk_size") or auto_chunk_size(m, *weight.shape[::-1]),
                          teacher_hidden)
    if method == "liger":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        extra = {"use_token_scaling": True} if objective == "dft" else {}
        fn = LigerFusedLinearCrossEntropyLoss(reduction="sum", ignore_index=IGNORE_INDEX, **extra)

        def liger_step():
            out = fn(weight, hidden, labels)
            return backward(getattr(out, "loss", out))  # some versions return (loss, z_loss, ...) objects
        return liger_step
    raise ValueError(f"unknown method {method!r}")


def measure(case: dict, hidden, weight, labels, teacher_hidden) -> dict:
    """Warm-up, peak and timed iterations of one case (fused and compiled cases alternate each
    timed iteration with a floor iteration on the same inputs, for a paired ratio)."""
    import torch

    cuda = hidden.is_cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step = build_step(case, hidden, weight, labels, teacher_hidden)
    paired = case.get("paired_floor") and case["method"] in IMPL_OF
    # the paired floor does the products the case's objective cannot avoid (kd: the teacher's logits too)
    floor = build_step(dict(case, method="floor"), hidden, weight, labels, teacher_hidden) if paired else None
    gc.collect()
    sync()
    if cuda:
        torch.cuda.empty_cache()
    meter = PeakMeter(cuda)

    def one(fn):
        """``(seconds, loss, CPU seconds of this process or None on CUDA)`` of one iteration."""
        hidden.grad = weight.grad = None
        sync()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3, float(loss.detach()), None
        t0, c0 = time.perf_counter(), time.process_time()
        loss = fn()
        return time.perf_counter() - t0, float(loss.detach()), time.process_time() - c0

    if case.get("profile"):
        for _ in range(case["warmup"]):
            one(step)
        return {"profile": profile(lambda: one(step), cuda)}
    warm = [one(step) for _ in range(case["warmup"])]
    peak = meter.peak() if warm else None
    timed, floor_timed = [], []
    for _ in range(case["repeats"]):
        timed.append(one(step))
        peak = meter.peak() if peak is None else peak
        if paired:
            floor_timed.append(one(floor))
            floor.out = None
    times, floor_times = [t[0] for t in timed], [t[0] for t in floor_timed]
    out = {"status": "ok", "times_s": times, "warmup_times_s": [t[0] for t in warm],
           "time_s": statistics.median(times) if times else None, "time_min_s": min(times) if times else None,
           "peak_bytes": peak if peak is not None else meter.peak(), "base_bytes": meter.base,
           "loss": (timed or warm)[-1][1] if (timed or warm) else None,
           "loss_tokens": int((labels != IGNORE_INDEX).sum())}
    if not cuda:  # CPU time: barely moved by other processes' load, unlike the wall time
        out["cpu_times_s"] = [t[2] for t in timed]
    if floor_times:
        out.update(paired_floor_times_s=floor_times, paired_floor_time_s=statistics.median(floor_times),
                   paired_ratio=statistics.median(t / f for t, f in zip(times, floor_times)))
    if floor_times and not cuda:
        cpu = [(t[2], f[2]) for t, f in zip(timed, floor_timed)]
        out.update(paired_floor_cpu_times_s=[f for _, f in cpu],
                   paired_cpu_ratio=statistics.median(t / f for t, f in cpu))
    return out


def run_cases_here(cases: list) -> None:
    """Run ``cases`` (one shape) in this interpreter, printing one result line per case; a case
    that runs out of memory is recorded as such and the next one runs."""
    import torch

    import deft

    first = cases[0]
    torch.set_num_threads(int(first["threads"]))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[first["dtype"]]
    teacher = any("teacher" in deft.parse_objective(c["objective"]).needs for c in cases)
    hidden, weight, labels, teacher_h = make_inputs(first["H"], first["V"], first["N"], first["seed"], teacher,
                                                    first["device"])
    hidden = hidden.to(dtype).requires_grad_(True)
    weight = weight.to(dtype).requires_grad_(True)
    teacher_h = None if teacher_h is None else teacher_h.to(dtype)
    for case in cases:
        needs_teacher = "teacher" in deft.parse_objective(case["objective"]).needs
        try:
            res = measure(case, hidden, weight, labels, teacher_h if needs_teacher else None)
        except Exception as exc:  # noqa: BLE001 - one case's failure is recorded, the others still run
            text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            res = {"status": "did not fit" if "out of memory" in text.lower() else "error", "note": text}
        hidden.grad = weight.grad = None
        print(RESULT_TAG + json.dumps(res), flush=True)


def profile(one, cuda: bool) -> dict:
    """Profile one iteration; split self time into matrix products and everything else."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        wall = one()[0]
    rows = sorted(((e.key, e.count, e.self_device_time_total if cuda else e.self_cpu_time_total)
                   for e in prof.key_averages()), key=lambda r: -r[2])
    total = sum(r[2] for r in rows)
    mm = sum(r[2] for r in rows if r[0] in {"aten::mm", "aten::addmm", "aten::addmm_"})
    return {"wall_s": wall, "self_total_s": total / 1e6, "matmul_s": mm / 1e6, "other_s": (total - mm) / 1e6,
            "top": [{"op": k, "calls": c, "self_s": t / 1e6} for k, c, t in rows[:25]]}


# ------------------------------------------------------------------ the parent process

def parse_shapes(spec: str, repeats: int, warmup: int, device: str) -> list[dict]:
    """``name[:N=...][:repeats=...][:warmup=...]`` or ``HxVxN`` items, comma-separated."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, *opts = item.split(":")
        if name in SHAPES:
            H, V, N, ref_device = SHAPES[name]
        else:
            try:
                H, V, N = (int(x) for x in name.lower().split("x"))
            except ValueError:
                raise SystemExit(f"unknown shape {name!r}: use {', '.join(SHAPES)} or HxVxN") from None
            ref_device = None
        shape = dict(name=name, H=H, V=V, N=N, repeats=repeats, warmup=warmup)
        for opt in opts:
            key, _, value = opt.partition("=")
            if key not in ("N", "repeats", "warmup") or not value.isdigit():
                raise SystemExit(f"shape option {opt!r}: expected N=, repeats= or warmup= with an integer")
            shape[key] = int(value)
        shape["ref_target"] = ref_device == device and shape["N"] == N
        if shape["N"] != N:
            shape["name"] = f"{name}:N={shape['N']}"
        out.append(shape)
    return out


def skip_reason(shape: dict, objective: str, method: str, device: str, itemsize: int):
    """Why a case is not run (``(status, note)``), or ``None``."""
    import deft

    kind = deft.parse_objective(objective).kind
    if method == "reference" and objective not in REFERENCE_OBJECTIVES:
        return "n/a", "no reference formulation"
    if method == "liger" and (objective not in LIGER_OBJECTIVES or device != "cuda"):
        return "n/a", "the liger peer covers nll and dft on CUDA"
    if method == "compiled" and kind != "gate":
        return "n/a", "the compiled step covers gate objectives"
    if method in ("plain", "reference") and device == "cpu":
        H, V, N = shape["H"], shape["V"], shape["N"]
        need = (7 if objective == "kd" else 5) * N * V * 4 + 2 * V * H * itemsize + 3 * N * H * itemsize
        avail = mem_available()
        if avail is not None and need > 0.8 * avail:
            return "did not fit", (f"would need about {need / 2**30:.1f} GiB > 80% of the "
                                   f"{avail / 2**30:.1f} GiB available")
    return None


def run_shape(shape, objectives, methods, args, base) -> list:
    """Every (objective, method) case of one shape: records in order (floor first)."""
    todo, records = [], []
    pairs = ([("nll", "floor")] if "floor" in methods else []) + [
        (o, m) for o in objectives for m in methods if m != "floor"]
    for obj, method in pairs:
        rec = dict(shape=shape["name"], objective=obj, method=method)
        skip = skip_reason(shape, obj, method, args.device, 4 if base["dtype"] == "fp32" else 2)
        if skip:
            rec.update(status=skip[0], note=skip[1])
        else:
            todo.append((rec, dict(base, **{k: shape[k] for k in ("H", "V", "N", "repeats", "warmup")},
                                   objective=obj, method=method, paired_floor=not args.no_paired_floor)))
        records.append(rec)
    env = child_env()
    groups = [todo] if args.group == "shape" else [[item] for item in todo]
    for group in filter(None, groups):
        load = os.getloadavg()[0]
        results = run_cases(str(Path(__file__).resolve()), [case for _, case in group], args.timeout, env)
        for (rec, _), res in zip(group, results):
            rec.update(res, load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2))
            msg = (f"{res['time_s']:8.4f} s  peak +{res['peak_bytes'] / MiB:8.1f} MiB  loss {res['loss']:.6g}"
                   if res.get("status") == "ok" else f"{res['status']}: {res.get('note', '')}")
            print(f"{shape['name']:>12} {rec['objective']:>16} {rec['method']:>9}  {msg}", flush=True)
    return records


def merge_lists(report: dict, shapes: list, objectives: list, methods: list) -> None:
    """--update: the report's shapes (a re-measured one replaces its entry), objectives and
    methods gain those of this run, in order of first appearance."""
    names = [s["name"] for s in report["shapes"]]
    for shape in shapes:
        if shape["name"] in names:
            report["shapes"][names.index(shape["name"])] = shape
        else:
            report["shapes"].append(shape)
    for key, new in (("objectives", objectives), ("methods", methods)):
        report[key] = list(dict.fromkeys(report[key] + new))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = dict(shapes="smollm2,qwen1.5b", objectives=",".join(DEFAULT_OBJECTIVES),
                    methods="fused,plain,reference,floor", repeats=3, warmup=1)
    ap.add_argument("--shapes", default=None,
                    help=f"comma-separated {', '.join(SHAPES)} or HxVxN, with options after colons, e.g. "
                         f"qwen7b:N=32768:repeats=3 (default: {defaults['shapes']})")
    ap.add_argument("--objectives", default=None, help=f"objective specs (default: {defaults['objectives']})")
    ap.add_argument("--methods", default=None,
                    help=f"subset of {', '.join(METHODS)} (default: {defaults['methods']})")
    ap.add_argument("--repeats", type=int, default=None, help="timed iterations per case (median reported; default 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations per case before timing (default 1)")
    ap.add_argument("--bench", action="store_true",
                    help="make bench: the short paired regression run (options it sets: "
                         + "; ".join(f"{k} {v}" for k, v in BENCH.items()) + "), compared with --against")
    ap.add_argument("--note", action="append", default=[], metavar="TEXT",
                    help="a line on how the run was made (pinning, other work on the machine) for the report; "
                         "repeatable")
    ap.add_argument("--against", default=None, metavar="RESULTS",
                    help="print the ratios beside those of this results JSON (--bench: default "
                         f"{COMMITTED.relative_to(ROOT)})")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: fp32 on CPU, bf16 on CUDA")
    ap.add_argument("--group", default="auto", choices=["auto", "case", "shape"],
                    help="one interpreter per case (CPU peak RSS) or per shape (auto: shape on CUDA)")
    ap.add_argument("--no-paired-floor", action="store_true", help="no floor iterations inside fused cases")
    ap.add_argument("--csv", default=None, help="CSV, one row per case (default: next to --out)")
    ap.add_argument("--update", action="store_true", help="replace the selected cases in an existing --out")
    ap.add_argument("--profile", default=None, metavar="OBJECTIVE", help="profile one fused iteration instead")
    add_run_args(ap, "fused_loss", timeout=600.0)
    args = ap.parse_args(argv)
    for key, value in defaults.items():  # the preset's value where the command line gives none
        if getattr(args, key) is None:
            setattr(args, key, BENCH[key] if args.bench else value)
    if args.bench and args.against is None:
        args.against = str(COMMITTED)
    if args.bench and args.out is None:
        args.out = str(ROOT / "build" / "bench" / f"fused_loss_{args.device}.json")
    if args._case is not None:
        cases = json.loads(args._case)
        run_cases_here(cases if isinstance(cases, list) else [cases])
        return 0
    import signal

    signal.signal(signal.SIGTERM, terminate)
    sys.path.insert(0, str(ROOT / "src"))
    dtype = args.dtype if args.dtype != "auto" else ("fp32" if args.device == "cpu" else "bf16")
    args.group = args.group if args.group != "auto" else ("shape" if args.device == "cuda" else "case")
    shapes = parse_shapes(args.shapes, args.repeats, args.warmup, args.device)
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method {bad[0]!r}: choose from {', '.join(METHODS)}")
    base = dict(device=args.device, dtype=dtype, threads=args.threads, seed=args.seed)
    if args.profile:
        shape = shapes[0]
        case = dict(base, **{k: shape[k] for k in ("H", "V", "N")}, objective=args.profile, method="fused",
                    repeats=0, warmup=max(1, shape["warmup"]), profile=True)
        prof = run_cases(str(Path(__file__).resolve()), [case], args.timeout, child_env())[0].get("profile")
        if prof is None:
            return 1
        print(format_profile(args.profile, shape["name"], prof))
        return 0

    out, md_path = output_paths(args, "fused_loss")
    csv_path = Path(args.csv or out.with_suffix(".csv"))
    import torch

    env = environment_info(args.device, {"torch": torch.__version__}, torch.get_num_threads())
    command = command_line(__file__, argv)
    settings = dict(base, timeout_s=args.timeout, group=args.group)
    if args.update:
        report = json.loads(out.read_text())
        if any(report["settings"].get(k) != settings[k] for k in ("device", "dtype", "threads", "seed")):
            raise SystemExit(f"--update: device, dtype, threads or seed differ from {out}")
        report.setdefault("updates", []).append({"command": command, "date": env["date"]})
        merge_lists(report, shapes, objectives, methods)
        report["notes"] = report.get("notes", []) + args.note
    else:
        report = {"command": command, "environment": env, "shapes": shapes, "objectives": objectives,
                  "methods": methods, "records": [], "settings": settings, "notes": args.note}
    for shape in shapes:
        new = run_shape(shape, objectives, methods, args, base)
        done = {(r["shape"], r["objective"], r["method"]) for r in new}
        report["records"] = [r for r in report["records"]
                             if (r["shape"], r["objective"], r["method"]) not in done] + new
        write_reports(report, out, csv_path, md_path)
    summary = write_reports(report, out, csv_path, md_path)
    print(f"targets met: {sum(s['met'] for s in summary)} of {len(summary)}; wrote {out}, {csv_path}, {md_path}")
    if args.against:
        print(compare_reports(report, json.loads(Path(args.against).read_text()), args.against))
    return 0


if __name__ == "__main__":
    sys.exit(main())
