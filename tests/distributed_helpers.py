"""Real 2-process runs on CPU under each engine deft supports, through ``accelerate launch``.

accelerate sets up FSDP only on accelerators (on CPU it quietly runs DDP); the job script
(``distributed_jobs.py``) makes it keep the FSDP plugin, so FSDP2 really shards here.

Each engine is an accelerate config file as a user writes one (``use_cpu: true``: the gloo
backend; DeepSpeed with ``DS_ACCELERATOR=cpu``). The DeepSpeed configs partition every parameter
(``stage3_param_persistence_threshold: 0``; by default DeepSpeed keeps parameters under 100k
elements whole, which is every parameter of a tiny model, so nothing would be tested) and leave
``stage3_gather_16bit_weights_on_model_save`` off, so a correct save cannot lean on it.
The jobs leave DeepSpeed's CPU shared-memory op (inference only) unbuilt: see ``distributed_jobs.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

JOBS = Path(__file__).with_name("distributed_jobs.py")
ROOT = Path(__file__).resolve().parent.parent

_COMMON = {"compute_environment": "LOCAL_MACHINE", "num_machines": 1, "num_processes": 2, "machine_rank": 0,
           "rdzv_backend": "static", "same_network": True, "use_cpu": True}


def _fsdp(state_dict_type: str) -> dict:
    return {"distributed_type": "FSDP", "mixed_precision": "no", "fsdp_config": {
        "fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_cpu_ram_efficient_loading": False,
        "fsdp_offload_params": False, "fsdp_reshard_after_forward": True, "fsdp_state_dict_type": state_dict_type}}


def _deepspeed(stage: int, init: bool) -> dict:
    zero = {"stage": stage}
    if stage == 3:
        zero.update(stage3_param_persistence_threshold=0, stage3_gather_16bit_weights_on_model_save=False)
    # mixed precision is the DeepSpeed file's to say ("bf16"): accelerate refuses it beside the file
    return {"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero3_init_flag": init, "deepspeed_config_file": {
        "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True, "zero_optimization": zero, "bf16": {"enabled": False}}}}


ENGINES = {
    "ddp": {"distributed_type": "MULTI_GPU", "mixed_precision": "no"},  # with use_cpu: DDP over gloo
    "fsdp2": _fsdp("SHARDED_STATE_DICT"),
    "fsdp2_full": _fsdp("FULL_STATE_DICT"),
    "zero2": _deepspeed(2, False),
    "zero3": _deepspeed(3, False),
    "zero3_init": _deepspeed(3, True),
}


def write_config(engine: str, folder: Path) -> Path:
    """The accelerate config file of ``engine`` (and its DeepSpeed JSON) in ``folder``."""
    config = json.loads(json.dumps({**_COMMON, **ENGINES[engine]}))
    ds = config.get("deepspeed_config", {})
    if isinstance(ds.get("deepspeed_config_file"), dict):
        path = folder / f"{engine}.deepspeed.json"
        path.write_text(json.dumps(ds["deepspeed_config_file"]))
        ds["deepspeed_config_file"] = str(path)
    path = folder / f"{engine}.accelerate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cpu_variant(shipped: Path, folder: Path) -> Path:
    """A shipped accelerate config made to run here: 2 CPU processes on one machine, fp32 (the
    DeepSpeed files' ``"auto"`` precision follows deft's ``--dtype``); everything else as shipped."""
    config = yaml.safe_load(Path(shipped).read_text())
    config.update(use_cpu=True, num_processes=2, num_machines=1, machine_rank=0, same_network=True)
    deepspeed = config.get("deepspeed_config", {})
    if "deepspeed_config_file" in deepspeed:  # precision is the DeepSpeed file's ("auto": deft's --dtype)
        deepspeed["deepspeed_config_file"] = str(ROOT / deepspeed["deepspeed_config_file"])
    else:
        config["mixed_precision"] = "no"
    config.pop("main_process_ip", None)
    path = folder / f"cpu_{Path(shipped).name}"
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(engine: str | Path, folder: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``argv`` (``-m module ...`` or a script and its arguments) on 2
    processes under ``engine`` (a name of :data:`ENGINES` or a config file); returns the finished
    process (output captured)."""
    # a deadlock (ranks making different collective calls) fails with every rank's stack, not a stuck suite
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", TOKENIZERS_PARALLELISM="false",
               DEFT_JOBS_HANG_DUMP_S="900")
    config = engine if isinstance(engine, Path) else write_config(engine, folder)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
               "--main_process_port", str(free_port()), *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=folder)


def run_jobs(engine: str | Path, folder: Path, jobs: list[dict]) -> subprocess.CompletedProcess:
    """Run ``jobs`` (see ``tests/distributed_jobs.py``) in one 2-process launch under ``engine``
    (a name of :data:`ENGINES` or a config file)."""
    path = folder / f"{Path(engine).stem}.jobs.json"
    path.write_text(json.dumps(jobs))
    return launch(engine, folder, [str(JOBS), str(path)])


def engine_env(engine: str | Path, folder: Path) -> dict:
    """The ``ACCELERATE_*`` and ``FSDP_*`` variables ``accelerate launch`` gives its processes under
    ``engine`` (a name of :data:`ENGINES`, written into ``folder``, or a config file), from
    accelerate's own launch preparation of the config file: what tells one engine's launch from
    another's (what a process carries from an earlier job is ``distributed_jobs.prepare_engine``'s)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    config = engine if isinstance(engine, Path) else write_config(engine, folder)
    args = launch_command_parser().parse_args(["--config_file", str(config), str(JOBS)])
    args, defaults, mixed_precision_from_flag = _validate_launch_command(args)
    if args.use_deepspeed:  # as accelerate's deepspeed_launcher does before preparing
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mixed_precision_from_flag else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        env = prepare_deepspeed_cmd_env(args)[1]
    else:
        env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


def run_engines(folder: Path, groups: list[tuple[str | Path, list[dict]]]) -> subprocess.CompletedProcess:
    """Run several engines' jobs in one 2-process launch: ``groups`` is ``[(engine, jobs), ...]``
    (an engine as :func:`launch` takes it). The launch is the first engine's; every job of another
    engine runs with that engine's launch variables (:func:`engine_env`; the first engine's that it
    lacks unset), so one start-up of the processes serves every engine. accelerate reads these
    variables afresh for each trainer (HF's ``TrainingArguments`` resets its state); what else one
    process carries from job to job is the job runner's to reset (``distributed_jobs.prepare_engine``),
    and each job records what it ran under (``distributed_jobs.what_ran``) for the tests to check."""
    envs = {engine: engine_env(engine, folder) for engine, _ in groups}  # (an engine may come back)
    first = envs[groups[0][0]]
    jobs = []
    for engine, engine_jobs in groups:
        env = {**{key: None for key in first}, **envs[engine]}
        jobs += [{**job, "env": {**env, **job.get("env", {})}} for job in engine_jobs]
    return run_jobs(groups[0][0], folder, jobs)


def tail(done: subprocess.CompletedProcess, n: int = 4000) -> str:
    return (done.stdout + done.stderr)[-n:]
