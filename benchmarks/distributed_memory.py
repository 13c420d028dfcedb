"""Per-rank memory of DDP, FSDP2 and DeepSpeed ZeRO-3: 2 processes, ``deft train``, measured side by side.

Each engine runs the shipped accelerate config (``examples/accelerate/``) made to run on 2 CPU
processes (``use_cpu``, no mixed precision), ``deft train`` on the same model and data, AdamW, a few
steps. accelerate sets up FSDP only on accelerators; as in the tests, the worker makes it keep its
FSDP plugin on CPU so that FSDP2 really shards. After the last optimizer step each rank measures:

* ``state_mib``: the bytes of every tensor storage alive in the process (found through the garbage
  collector, each storage counted once): the model's parameters (this rank's shards under FSDP2 /
  ZeRO-3), gradients and optimizer state (Adam's two moments; ZeRO-3's fp32 partitions), plus the
  small buffers. Activations are freed by then. This is what sharding divides.
* ``peak_rss_mib``: the process's peak resident size (includes the Python / torch libraries, the
  data and the activations of the step, which sharding does not divide).

The table gives each engine's per-rank ``state_mib`` and its ratio to DDP's (ideal full sharding on
2 processes: 0.5, plus what stays replicated). CPU only: on GPUs the same accounting holds per GPU
(``docs/distributed.md``).

    .venv/bin/python benchmarks/distributed_memory.py --model smollm2-135m \\
        --out benchmarks/results/distributed_memory_cpu.json --markdown docs/benchmarks/distributed_memory_cpu.md
    .venv/bin/python benchmarks/distributed_memory.py --model tiny --steps 1   # smoke run (tiny random model)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from casekit import child_env, environment_info, package_versions, peak_rss_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"ddp": None, "fsdp2": "fsdp2.yaml", "zero3": "deepspeed_zero3.yaml"}


def live_tensor_bytes() -> int:
    """Bytes of every distinct tensor storage reachable from Python objects in this process."""
    import torch

    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.device.type != "meta":
            try:
                storage = obj.untyped_storage()
                if storage.nbytes():
                    storages[(storage.device.type, storage.data_ptr())] = storage.nbytes()
            except (RuntimeError, NotImplementedError):  # no storage of its own (DTensor) or a freed one
                continue
    return sum(storages.values())


def worker(args) -> None:
    """One rank of one engine's run: train, then write this rank's measurements."""
    from transformers import TrainerCallback

    from deft.train import load_config, train

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":  # FSDP2 for real on CPU, as the tests run it
        sys.path.insert(0, str(ROOT / "tests"))
        from distributed_jobs import allow_fsdp_on_cpu

        allow_fsdp_on_cpu()
    rank = int(os.environ.get("RANK", "0"))
    readings = {}

    class Measure(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            if state.global_step == args.steps:
                readings.update(state_mib=live_tensor_bytes() / 2**20, peak_rss_mib=peak_rss_bytes() / 2**20)

    cfg = load_config(None, dict(model=args.model, data=args.data, output_dir=args.run_dir, max_steps=args.steps,
                                 batch_size=1, max_length=args.max_length, progress=False, optim="adamw",
                                 objective="deft", save_steps=0))
    train(cfg, log=lambda *_: None, callbacks=[Measure()])
    Path(args.measure_dir, f"rank{rank}.json").write_text(json.dumps(readings))


def cpu_config(engine: str, folder: Path) -> Path:
    """The shipped config of ``engine`` on 2 CPU processes (DDP: accelerate's multi-GPU type over gloo)."""
    import yaml

    shipped = SHIPPED[engine]
    config = yaml.safe_load((ROOT / "examples" / "accelerate" / shipped).read_text()) if shipped else {
        "compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "rdzv_backend": "static"}
    config.update(use_cpu=True, num_processes=2, num_machines=1, machine_rank=0, same_network=True)
    deepspeed = config.get("deepspeed_config", {})
    if "deepspeed_config_file" in deepspeed:  # precision is the DeepSpeed file's ("auto": deft's --dtype)
        deepspeed["deepspeed_config_file"] = str(ROOT / deepspeed["deepspeed_config_file"])
    else:
        config["mixed_precision"] = "no"
    path = folder / f"{engine}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_engine(engine: str, args, folder: Path) -> list[dict]:
    measure = folder / f"{engine}_measure"
    measure.mkdir()
    env = dict(child_env(threads=1), DS_ACCELERATOR="cpu")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cpu_config(engine, folder)),
               __file__, "--worker", "--model", args.model, "--data", args.data, "--steps", str(args.steps),
               "--max-length", str(args.max_length), "--run-dir", str(folder / f"{engine}_run"),
               "--measure-dir", str(measure)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{engine}: the run failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return [json.loads((measure / f"rank{r}.json").read_text()) for r in range(2)]


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# Per-rank memory of DDP, FSDP2 and ZeRO-3 ({report['model']}, 2 CPU processes)", "",
             f"Measured {env['date']} on {env['cpu']} ({env['cpu_cores']} cores, {env['mem_total_gib']} GiB), "
             f"torch {env.get('torch')}, accelerate {env.get('accelerate')}, deepspeed {env.get('deepspeed')}; "
             f"`deft train --objective deft`, AdamW, {report['steps']} steps, batch 1 per process, "
             f"max length {report['max_length']}. Written by `benchmarks/distributed_memory.py`.", "",
             "| engine | rank | tensor state (MiB) | / DDP | peak RSS (MiB) |", "|---|---:|---:|---:|---:|"]
    ddp = [r["state_mib"] for r in report["engines"]["ddp"]]
    for engine, ranks in report["engines"].items():
        for rank, r in enumerate(ranks):
            lines.append(f"| {engine} | {rank} | {r['state_mib']:.1f} | {r['state_mib'] / ddp[rank]:.2f} | "
                         f"{r['peak_rss_mib']:.0f} |")
    lines += ["", "Tensor state: every tensor storage alive after the last optimizer step (parameters, gradients, "
              "optimizer state and buffers held by that rank). Full sharding over 2 processes halves what it "
              "shards: FSDP2 holds half of DDP's parameters and Adam moments (gradients are freed after the step "
              "in both). ZeRO-3 holds more than half because DeepSpeed keeps its own fp32 master partition and a "
              "gradient partition beside the partitioned fp32 parameters (5 slices of 1/2 where DDP holds 3 "
              "whole copies: 5/6 = 0.83); with bf16 weights its master copy is the only fp32 one. Peak RSS adds "
              "the libraries, the data and the step's activations, which no engine divides.", ""]
    return "\n".join(lines)


def figfont_data(folder: Path) -> str:
    path = folder / "figfont.jsonl"
    subprocess.run([sys.executable, "-m", "deft.cli.main", "data", "figfont", "--out", str(path), "--n", "16",
                    "--seed", "3"], check=True, env=child_env(), capture_output=True)
    return str(path)


def tiny_model(folder: Path) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import save_tiny_model_dir

    return str(save_tiny_model_dir(folder / "tiny"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="model spec; 'tiny' builds a tiny random model (smoke)")
    ap.add_argument("--data", default=None, help="training records (default: 16 figfont records made here)")
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps; measured after the last")
    ap.add_argument("--max-length", type=int, default=256, help="tokens per example")
    ap.add_argument("--engines", default=",".join(SHIPPED), help="comma-separated, from: " + ", ".join(SHIPPED))
    ap.add_argument("--out", default=None, help="results JSON")
    ap.add_argument("--markdown", default=None, help="markdown report")
    ap.add_argument("--render", default=None, help="rewrite --markdown from a results JSON (no measuring)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    ap.add_argument("--measure-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.render:
        text = markdown(json.loads(Path(args.render).read_text()))
        print(text)
        if args.markdown:
            Path(args.markdown).write_text(text)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.model == "tiny":
            args.model = tiny_model(folder)
        args.data = args.data or figfont_data(folder)
        engines = {e: run_engine(e, args, folder) for e in args.engines.split(",")}
    import torch

    report = {"model": args.model if not args.model.startswith(tmp) else "tiny", "steps": args.steps,
              "max_length": args.max_length, "engines": engines,
              "environment": environment_info("cpu", {"torch": torch.__version__,
                                                      **package_versions(["accelerate", "deepspeed"])}, 1)}
    text = markdown(report)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
