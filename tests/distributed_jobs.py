"""Runs a list of training jobs in every process of one ``accelerate launch`` (tests only).

``python -m accelerate.commands.launch --config_file C tests/distributed_jobs.py JOBS.json``: one
launch pays the start-up of the processes once for several jobs, of one engine or of several
(``distributed_helpers.run_engines`` gives each job its engine's launch variables). Jobs (JSON
objects):

* ``{"kind": "train", "config": {...}, "kill_after_save": N}``: ``deft.train.train`` with that
  config; with ``kill_after_save`` every process SIGKILLs itself once checkpoint N is in place.
  The main process writes ``<output_dir>/compute_dtypes.json`` and ``engine.json`` (see below).
* ``{"kind": "sft", "model": DIR, "data": JSONL, "out": DIR, "objective": ..., "args": {...},
  "lora": {...}, "teacher": DIR, "tokenized": bool}``: a ``DeftSFTTrainer`` run, then
  ``save_model(OUT/final)``; the main process writes ``OUT/log_history.json``,
  ``OUT/examples.json`` (the processed training rows: ``input_ids`` and ``labels``) and
  ``OUT/compute_dtypes.json``: the dtypes the model's first linear layer computed in (what mixed
  precision really did, whatever the configuration says), and ``OUT/engine.json``: the engine
  accelerate set up for the job and how it sharded the model (:func:`what_ran`).
* ``{"kind": "sft", ..., "expect_error": "IncompleteSaveError"}``: the job must raise that error.
* ``{"kind": "cli", "argv": ["train", ...]}``: ``deft`` itself (``deft.cli.main.main``) in every
  process; a non-zero exit code ends the launch with it.
* ``"env": {...}`` in any job: environment variables set for that job only (``null``: unset),
  e.g. ``ACCELERATE_MIXED_PRECISION`` or another engine's launch variables, which each job's
  ``TrainingArguments`` reads afresh (``distributed_helpers.run_engines``).

Under DeepSpeed the jobs leave its CPU shared-memory communication op unbuilt: DeepSpeed uses it
only for inference's tensor-parallel all-reduce (training's collectives go through
``torch.distributed``, gloo here, NCCL on GPUs), and building it costs a fresh machine about 45 s
of compiler time.
"""

import gc
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def kill_after_save(step):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                os.kill(os.getpid(), signal.SIGKILL)

    return Kill()


def accelerate_engine() -> dict:
    """What accelerate set up, read from its shared state as it is (calling ``AcceleratorState()``
    would copy ``PartialState``'s distributed type over it and change what the rest of the job does)."""
    from accelerate.state import AcceleratorState
    from transformers.integrations import is_deepspeed_zero3_enabled

    state = AcceleratorState._shared_state
    deepspeed = state.get("deepspeed_plugins")  # one plugin, or several by name (the first is active here)
    if isinstance(deepspeed, dict):
        deepspeed = next(iter(deepspeed.values()))
    fsdp = state.get("fsdp_plugin")
    return {"distributed_type": state["distributed_type"].value, "zero_stage": deepspeed and deepspeed.zero_stage,
            "zero3_init_flag": deepspeed and deepspeed.zero3_init_flag,
            "fsdp_state_dict_type": fsdp and str(fsdp.state_dict_type), "hf_zero3": is_deepspeed_zero3_enabled()}


def what_ran(out):
    """A callback writing, from the main process, ``out/compute_dtypes.json``: the dtypes of the
    outputs of the model's first linear layer over the run, and ``out/engine.json``
    (:func:`accelerate_engine` at the start of training, and ``sharding``: how the prepared model's
    parameters are held, ``deft.train.sharding.sharding_of``)."""
    import torch
    from accelerate import PartialState
    from transformers import TrainerCallback

    class WhatRan(TrainerCallback):
        def __init__(self):
            self.seen, self.hook = set(), None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            from deft.train.sharding import sharding_of

            self.engine = {**accelerate_engine(), "sharding": sharding_of(model)}
            linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
            self.hook = linear.register_forward_hook(lambda module, inputs, output: self.seen.add(str(output.dtype)))

        def on_train_end(self, args, state, control, **kwargs):
            self.hook.remove()
            if PartialState().is_main_process:
                os.makedirs(out, exist_ok=True)
                with open(os.path.join(out, "compute_dtypes.json"), "w") as f:
                    json.dump(sorted(self.seen), f)
                with open(os.path.join(out, "engine.json"), "w") as f:
                    json.dump(self.engine, f)

    return WhatRan()


def run_train(job):
    from deft.train import load_config, train

    callbacks = [what_ran(job["config"]["output_dir"])]
    if job.get("kill_after_save"):
        callbacks.append(kill_after_save(job["kill_after_save"]))
    train(load_config(None, job["config"]), log=print, callbacks=callbacks)


def sft_dataset(job, tokenizer):
    from datasets import Dataset

    rows = [json.loads(line) for line in open(job["data"])]
    if job.get("tokenized"):  # rows carry input_ids and completion_mask already
        return Dataset.from_list(rows)
    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in rows])


def run_sft(job):
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deft.integrations.trl import DeftSFTConfig, DeftSFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    args = dict(output_dir=job["out"], max_steps=1, per_device_train_batch_size=1, gradient_accumulation_steps=2,
                logging_steps=1, report_to=[], learning_rate=1.0, optim="sgd", lr_scheduler_type="constant",
                max_grad_norm=0.0, weight_decay=0.0, use_cpu=True, save_strategy="no", disable_tqdm=True,
                max_length=128, seed=3, data_seed=3, objective=job.get("objective", "deft"), bf16=False,
                gradient_checkpointing=False, dataloader_drop_last=False)
    args.update(job.get("args", {}))
    config = DeftSFTConfig(**args)
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype="float32")
    extra = {}
    if job.get("lora"):
        from peft import LoraConfig

        extra["peft_config"] = LoraConfig(task_type="CAUSAL_LM", **job["lora"])
    if job.get("teacher"):
        extra["teacher_model"] = AutoModelForCausalLM.from_pretrained(job["teacher"], dtype="float32")
    from transformers import set_seed

    set_seed(config.seed)  # PEFT initialises the adapter inside the trainer, before HF seeds
    trainer = DeftSFTTrainer(model, args=config, train_dataset=sft_dataset(job, tokenizer),
                             processing_class=tokenizer, callbacks=[what_ran(job["out"])], **extra)
    trainer.train()
    trainer.save_model(os.path.join(job["out"], "final"))
    if PartialState().is_main_process:
        with open(os.path.join(job["out"], "log_history.json"), "w") as f:
            json.dump(trainer.state.log_history, f)
        rows = []
        for row in trainer.train_dataset:  # TRL's labels: -100 outside the completion
            rows.append({"input_ids": row["input_ids"], "labels": row["labels"]})
        with open(os.path.join(job["out"], "examples.json"), "w") as f:
            json.dump(rows, f)


def run_cli(job):
    from deft.cli.main import main

    code = main(job["argv"])
    if code:
        raise SystemExit(code)


def skip_deepspeed_shm_op():
    """Mark DeepSpeed's CPU shared-memory op incompatible, so that its communication backend
    starts without compiling it (see the module docstring)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def allow_fsdp_on_cpu():
    """accelerate sets up FSDP only on accelerators: with ``use_cpu`` it falls back to DDP without a
    word (``distributed_type`` MULTI_CPU). torch's ``fully_shard`` runs on CPU over gloo, so the tests
    make accelerate keep the FSDP plugin it was given, with the mixed precision of the launch, as
    accelerate sets it on accelerators; everything after that (accelerate's FSDP2
    preparation, HF's sharded checkpoints, deft's gathering) is the code a GPU run executes."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            # as accelerate records it: every later AcceleratorState() copies PartialState's type back
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            if self._mixed_precision != "no":  # as accelerate does for FSDP on accelerators
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = init


def main(path):
    import faulthandler

    hang = int(os.environ.get("DEFT_JOBS_HANG_DUMP_S", "0"))
    for job in json.loads(open(path).read()):
        if hang:  # a deadlocked job becomes a failure with every thread's stack instead of a stuck launch
            faulthandler.dump_traceback_later(hang, exit=True)  # (a new budget for each job)
        env = job.get("env", {})
        saved = {key: os.environ.get(key) for key in env}
        set_environment(env)
        try:
            prepare_engine()
            run_job(job)
        finally:
            set_environment(saved)
        # what is alive now (imported modules, mostly) leaves the garbage collector's reach: HF's
        # Trainer runs a full gc.collect() at the start of every training, each job's trainer included
        gc.collect()
        gc.freeze()


def set_environment(values: dict) -> None:
    """Set each variable of ``values``; ``None`` unsets it."""
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_PREPARED = set()


def prepare_engine() -> None:
    """The FSDP-on-CPU shim and the DeepSpeed op skip, once each, when a job's engine first needs
    them; and, for a job outside DeepSpeed, HF's ZeRO-3 switch off, as in a launch of its own. HF
    resets that switch only when a DeepSpeed job's ``TrainingArguments`` sets a new one, and a
    DeepSpeed job's ``TrainingArguments`` may outlive the job (this runner freezes what is alive
    after each job), so ``is_deepspeed_zero3_enabled()`` could stay true in the jobs after it."""
    def uses(variable):
        return os.environ.get(variable, "false").lower() == "true"

    for variable, prepare in (("ACCELERATE_USE_FSDP", allow_fsdp_on_cpu),
                              ("ACCELERATE_USE_DEEPSPEED", skip_deepspeed_shm_op)):
        if uses(variable) and prepare not in _PREPARED:
            prepare()
            _PREPARED.add(prepare)
    if not uses("ACCELERATE_USE_DEEPSPEED"):
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


def run_job(job):
    expected = job.get("expect_error")
    try:
        {"train": run_train, "sft": run_sft, "cli": run_cli}[job["kind"]](job)
    except Exception as err:  # noqa: BLE001 - the expected error is checked by name
        if type(err).__name__ != expected:
            raise
        print(f"EXPECTED {expected}: {err}", flush=True)
        return
    if expected:
        raise SystemExit(f"job {job.get('out')} did not raise {expected}")


if __name__ == "__main__":
    main(sys.argv[1])
