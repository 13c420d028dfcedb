"""``deft train`` as a function: :func:`train` runs one job end to end.

Flow (each step a helper taking the :class:`_Run` context):

1. :func:`_open` — lock the output folder, refuse a folder holding another run (or clear it with
   ``overwrite``), find the checkpoint to resume from, or notice that the run is finished;
2. :func:`_load_data` — tokenise the records into memory-mapped datasets, pack them if asked;
3. :func:`_load_models` — the model (LoRA, gradient checkpointing) and the frozen models the
   objective needs (reference, teacher, psft old policy), then patch the fused loss in;
4. :func:`_make_trainer` — ``TrainingArguments`` and :class:`~deft.train.trainer.DeftTrainer`
   with its callbacks (atomic checkpoints, psft refresh, TensorBoard);
5. :func:`_finish` — evaluation, a finite-weights check, ``final/`` and ``summary.json``.

Multi-process runs (``accelerate launch``) call :func:`train` in every process; only the main
process locks, clears and writes the folder's files.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..io import atomic_write_dir, atomic_write_json, atomic_write_text
from .config import TrainConfig, config_to_dict
from .rundir import RunLock, is_finished, latest_checkpoint, mean_loss, prepare_fresh_folder, truncate_metrics
from .sharding import fallback_notice, is_partitioned, whole_copy, zero3_init_disabled

__all__ = ["train", "build_examples", "next_steps", "settings_hash_of", "is_main_process"]

_OPTIMIZERS = {"adamw": "adamw_torch", "sgd": "sgd"}  # deft name -> HF optim name
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
STAGING = ".staging"


@dataclass
class _Run:
    """Everything one training job carries from step to step."""

    cfg: TrainConfig
    log: Callable
    out: Path
    main: bool
    objective: object = None
    lock: Optional[RunLock] = None
    resume_from: Optional[str] = None
    finished: bool = False
    tokenizer: object = None
    examples: object = None
    eval_examples: object = None
    model: object = None
    old_policy: object = None
    device: str = "cpu"
    args: object = None  # the TrainingArguments (made before the models: they switch on ZeRO-3's init)
    callbacks: list = field(default_factory=list)


def is_main_process() -> bool:
    """Whether this is the process that writes the run's files and speaks (rank 0 of an
    ``accelerate launch``; the only process otherwise)."""
    return int(os.environ.get("RANK", "0")) == 0


def build_examples(cfg: TrainConfig, tokenizer, source: str, log=print):
    """Read, validate and tokenise ``source`` into a memory-mapped ``datasets.Dataset``
    (:func:`deft.data.tokenize_to_dataset`: the records stream into an Arrow file, so a large
    file never becomes a Python list); raise :class:`~deft.data.validate.DataError` listing
    ``FILE:LINE`` problems unless ``cfg.skip_invalid``."""
    from ..data.dataset import tokenize_to_dataset
    from ..data.records import parse_key_map

    key_map = parse_key_map(cfg.map)
    dataset, report = tokenize_to_dataset(source, tokenizer, key_map=key_map or None, template=cfg.resolved_template(),
                                          max_length=cfg.max_length, truncation=cfg.truncation,
                                          all_turns=cfg.all_turns, skip_invalid=cfg.skip_invalid)
    log(f"data {source}: {report.summary()}" + (f" (skipped {report.invalid} invalid)" if report.invalid else ""))
    return dataset


def train(cfg: TrainConfig, log=print, callbacks: Sequence = ()) -> dict:
    """Run one training job; returns the summary (``steps``, ``train_loss`` — the mean loss of
    every step in ``metrics.jsonl`` —, ``output_dir``, ``final``; ``already_finished`` when
    ``resume`` found a finished run, which is left untouched). ``callbacks`` are extra HF
    ``TrainerCallback`` objects. Raises ``ValueError`` (one line) on bad input, a used or locked
    output folder, and a non-finite loss or gradient norm."""
    if not cfg.data:
        raise ValueError("no training data: pass --data FILE (records from 'deft data' or your own)")
    cfg.resolved_template()  # a paper template whose model family is unknown fails before anything loads
    run = _open(cfg, log)
    try:
        if run.finished:
            return _finished_summary(run)
        from transformers import set_seed
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        set_seed(cfg.seed)
        run.callbacks = list(callbacks)
        _load_data(run)
        run.device = "cuda" if torch.cuda.is_available() else "cpu"
        run.args = _training_args(run)
        _load_models(run)
        _write_start(run)
        trainer = _make_trainer(run)
        try:
            trainer.train(resume_from_checkpoint=run.resume_from)
        finally:
            trainer.close_progress()
        return _finish(run, trainer)
    finally:
        if run.lock is not None:
            run.lock.release()


def _open(cfg: TrainConfig, log) -> _Run:
    """Lock and check the output folder (main process) and pick the checkpoint to resume from."""
    from ..objectives import parse_objective

    run = _Run(cfg=cfg, log=log, out=Path(cfg.output_dir), main=is_main_process(),
               objective=parse_objective(cfg.objective))
    if run.main:
        run.lock = RunLock(run.out).acquire()
    try:
        if cfg.resume and is_finished(run.out):
            run.finished = True
        elif cfg.resume:
            run.resume_from = cfg.resume_from_checkpoint or latest_checkpoint(run.out)
            if cfg.resume_from_checkpoint and not (Path(cfg.resume_from_checkpoint) / "trainer_state.json").exists():
                raise FileNotFoundError(f"{cfg.resume_from_checkpoint}: not a complete checkpoint (no "
                                        "trainer_state.json); pass a checkpoint-N folder of a deft train run")
            if run.resume_from is None:
                log(f"no checkpoint in {run.out}: starting from scratch")
            else:
                _check_resumed_settings(run)
        elif run.main:
            prepare_fresh_folder(run.out, cfg.overwrite)
    except BaseException:
        if run.lock is not None:
            run.lock.release()
        raise
    return run


def _finished_summary(run: _Run) -> dict:
    import json

    path = run.out / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {"output_dir": str(run.out)}
    summary.update(already_finished=True, final=str(run.out / "final"), output_dir=str(run.out))
    run.log(f"{run.out} is finished already (final/ present): nothing to do; to train further, start a new run "
            f"from it with --model {run.out / 'final'}, or retrain with --overwrite")
    return summary


def _load_data(run: _Run) -> None:
    from ..model import load_tokenizer
    from .collate import pack_examples

    cfg = run.cfg
    run.tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    run.examples = build_examples(cfg, run.tokenizer, cfg.data, log=run.log)
    run.eval_examples = build_examples(cfg, run.tokenizer, cfg.eval_data, log=run.log) if cfg.eval_data else None
    if cfg.packing:
        run.examples = pack_examples(run.examples, cfg.max_length)
        run.eval_examples = pack_examples(run.eval_examples, cfg.max_length) if run.eval_examples else None
        run.log(f"packing: {len(run.examples)} rows of at most {cfg.max_length} tokens")


def _load(cfg: TrainConfig, spec: str):
    """A model, whole on every process (frozen models never enter the engine, so ZeRO-3's
    partitioned initialisation must not touch them)."""
    from ..model import load_model

    with zero3_init_disabled():
        return load_model(spec, dtype=_DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code)


def _load_trained(run: _Run):
    """The model to train: partitioned as it loads under DeepSpeed ZeRO-3 with ``zero3_init_flag``
    (each process reads only its slices), whole otherwise."""
    from ..model import load_model

    cfg, plugin = run.cfg, getattr(run.args, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3 and plugin.zero3_init_flag:
        return load_model(cfg.model, dtype=_DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code)
    return _load(cfg, cfg.model)


def _with_lora(cfg: TrainConfig, model):
    """``model`` wrapped by a PEFT LoRA adapter as ``cfg`` asks (``lora_rank`` > 0)."""
    from peft import LoraConfig, get_peft_model

    targets = "all-linear" if cfg.target_modules == ["all-linear"] else cfg.target_modules
    return get_peft_model(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                            target_modules=targets, task_type="CAUSAL_LM"))


def _load_models(run: _Run) -> None:
    """The trained model (LoRA if asked) and the frozen models of the objective's inputs
    (:func:`deft.objectives.objective_inputs`: one per ``model`` / ``label_logprobs`` need, from its
    option or its default), patched in through each need's ``patch_arg``. Frozen models are whole
    on every process (:func:`deft.train.sharding.whole_copy`; the reference of a model loaded
    partitioned by ZeRO-3's init is the starting model loaded again)."""
    from ..model.fused_forward import patch_fused_loss
    from ..objectives import objective_inputs

    cfg = run.cfg
    inputs = objective_inputs(run.objective)
    model = _load_trained(run)
    partitioned = is_partitioned(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    frozen = {}  # need name -> frozen model (or "adapter")
    for need in inputs:  # a model need with a default (the reference) is the initial model, taken before LoRA
        if need.source == "model" and need.default and not _option(cfg, need):
            frozen[need.name] = "adapter" if cfg.lora_rank else (
                _load(cfg, cfg.model) if partitioned else copy.deepcopy(model))
    if cfg.lora_rank:
        model = _with_lora(cfg, model)
    for need in inputs:
        if need.patch_arg is None or need.name in frozen:
            continue
        if _option(cfg, need):
            frozen[need.name] = _load(cfg, _option(cfg, need))
        elif need.source == "label_logprobs":  # a snapshot of the trained model, refreshed during training
            frozen[need.name] = whole_copy(model)
        else:
            from ..objectives.needs import missing_error

            raise missing_error(run.objective.spec, need, "config")
    run.old_policy = next((frozen[n.name] for n in inputs if n.source == "label_logprobs" and n.name in frozen), None)
    for module in frozen.values():
        if isinstance(module, torch.nn.Module):
            module.to(run.device).eval().requires_grad_(False)
    # no per-call value check: the trainer checks each step's loss and gradient norm and stops with
    # NonFiniteError naming the step and the last good checkpoint (and saves a synchronisation per call)
    patch_fused_loss(model, run.objective, chunk_size=cfg.chunk_size, fused=cfg.fused, check_inputs=False,
                     models=frozen)
    run.model = model


def _option(cfg: TrainConfig, need) -> Optional[str]:
    """The value of the option that supplies ``need`` (None when it has none or it is unset)."""
    return getattr(cfg, need.option, None) if need.option else None


def _settings_changes(run: _Run) -> tuple[list[str], list[str]]:
    """``(changes of what the run computes, other changes)`` between the folder's ``config.yaml``
    and the settings of this run, as ``"key old -> new"``."""
    import yaml

    path = run.out / "config.yaml"
    if not path.exists():
        return [], []
    old = _as_loaded(yaml.safe_load(path.read_text()) or {}, str(path))
    new = config_to_dict(run.cfg)
    changed = [k for k in new if k in old and old[k] != new[k] and k not in ("resume", "resume_from_checkpoint")]
    text = {k: f"{k} {old[k]!r} -> {new[k]!r}" for k in changed}
    # the data files are compared by path here (their bytes enter summary.json's settings hash);
    # a longer run under a constant learning rate continues the same run, under a schedule it would not
    extend = ("max_steps", "epochs") if run.cfg.lr_scheduler == "constant" == old.get("lr_scheduler") else ()
    computed = [text[k] for k in changed if (k not in _NOT_HASHED or k in ("data", "eval_data")) and k not in extend]
    return computed, [text[k] for k in changed if text[k] not in computed]


def _as_loaded(old: dict, where: str) -> dict:
    """The values of an earlier run's ``config.yaml`` converted as options are now (a comma string of
    an earlier version becomes the list it means), so that only real changes count."""
    from dataclasses import fields

    from ..config import apply_overrides

    names = {f.name for f in fields(TrainConfig)}
    known = {k: v for k, v in old.items() if k in names}
    try:
        converted = config_to_dict(apply_overrides(TrainConfig(), known, where=where))
    except ValueError:
        return old  # compared as written: every differing value is reported
    return {**old, **{k: converted[k] for k in known}}


def _check_resumed_settings(run: _Run) -> None:
    """A resumed run must compute what the interrupted one started: a changed learning rate,
    objective, step count, data file, ... would mix two runs in one folder. Settings that only
    change how the run is watched or saved (``logging_steps``, ``save_total_limit``, ...) may change,
    and so may the length of a run under a constant learning rate (``max_steps``, ``epochs``)."""
    computed, _ = _settings_changes(run)
    if computed:
        raise ValueError(f"{run.out}: resuming with other settings than the run was started with "
                         f"({'; '.join(computed)}); pass the same settings, --overwrite to start over, "
                         "or another --out")


def _write_start(run: _Run) -> None:
    """``config.yaml``; on resume, the metrics of the steps after the checkpoint are dropped."""
    import json

    import yaml

    if not run.main:
        return
    new = config_to_dict(run.cfg)
    if run.resume_from:
        _, watched = _settings_changes(run)
        if watched:
            run.log(f"resuming with settings that differ from {run.out / 'config.yaml'}: {'; '.join(watched)}")
    atomic_write_text(run.out / "config.yaml", yaml.safe_dump(new, sort_keys=False))
    shutil.rmtree(run.out / STAGING, ignore_errors=True)  # a crash's half-written checkpoint
    step = 0
    if run.resume_from:
        step = json.loads((Path(run.resume_from) / "trainer_state.json").read_text())["global_step"]
        run.log(f"resuming from {run.resume_from} (step {step})")
    truncate_metrics(run.out / "metrics.jsonl", step)


def _trackers(cfg: TrainConfig) -> list[str]:
    """The experiment trackers of ``report_to`` (a list once loaded; ``none`` = none)."""
    return [name for name in cfg.report_to if name != "none"]


def _training_args(run: _Run):
    from transformers import TrainingArguments

    cfg = run.cfg
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    trackers = [name for name in _trackers(cfg) if name != "tensorboard"]  # deft attaches TensorBoard itself
    return TrainingArguments(
        output_dir=str(run.out / STAGING),  # HF writes checkpoints here; AtomicCheckpoints moves them
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=0,  # set from warmup_ratio by DeftTrainer.create_scheduler
        weight_decay=cfg.weight_decay, adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2,
        max_grad_norm=cfg.max_grad_norm, optim=_OPTIMIZERS[cfg.optim],
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=1, save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500,
        save_total_limit=None,  # AtomicCheckpoints rotates the complete checkpoints
        eval_strategy="steps" if (run.eval_examples and cfg.eval_steps) else "no", eval_steps=cfg.eval_steps or None,
        report_to=trackers, disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=cfg.num_workers,
        bf16=cfg.dtype == "bfloat16" and run.device == "cuda", use_cpu=run.device == "cpu",
        ddp_backend="gloo" if (distributed and run.device == "cpu") else None,
        average_tokens_across_devices=True, ddp_find_unused_parameters=False, prediction_loss_only=True,
    )


def _make_trainer(run: _Run):
    from transformers.trainer_callback import PrinterCallback

    from .collate import Collator
    from .trainer import AtomicCheckpoints, DeftTrainer, OldPolicyRefresh, OLD_POLICY_FILE, load_old_policy

    cfg = run.cfg
    trainer = DeftTrainer(
        model=run.model, args=run.args, train_dataset=run.examples, eval_dataset=run.eval_examples,
        data_collator=Collator(run.tokenizer.pad_token_id), metrics_path=str(run.out / "metrics.jsonl"),
        progress=cfg.progress, loss_normalization=cfg.loss_normalization, warmup_ratio=cfg.warmup_ratio,
        run_dir=str(run.out),
    )
    trainer.remove_callback(PrinterCallback)  # metrics.jsonl and the progress bar replace its dict dumps
    trainer.add_callback(AtomicCheckpoints(trainer, str(run.out), cfg.save_total_limit))
    if "tensorboard" in _trackers(cfg) and run.main:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        trainer.add_callback(TensorBoardCallback(SummaryWriter(log_dir=str(run.out / "tensorboard"))))
    if run.old_policy is not None:
        trainer.old_policy = run.old_policy
        trainer.add_callback(OldPolicyRefresh(run.old_policy, cfg.old_policy_refresh, trainer))
        if run.resume_from and not load_old_policy(run.old_policy, run.resume_from):
            run.log(f"{run.resume_from} has no {OLD_POLICY_FILE}: the psft old policy is the starting model until "
                    "its next refresh, so this run will differ from an uninterrupted one")
    for callback in run.callbacks:
        trainer.add_callback(callback)
    notice = fallback_notice(trainer.accelerator)
    if notice and run.main:
        run.log(notice)
    return trainer


def _finish(run: _Run, trainer) -> dict:
    """Evaluate, gather the weights (every engine), check they are finite, write ``final/`` (checked
    complete before it is renamed into place) and ``summary.json``. A failure on the main process
    reaches every process, so all stop with the same one-line error."""
    from accelerate.utils import broadcast_object_list

    from .final import IncompleteSaveError
    from .sharding import gather_state_dict
    from .trainer import NonFiniteError

    steps = trainer.state.global_step
    summary = {"steps": steps, "output_dir": str(run.out)}
    if run.eval_examples:
        summary["eval_loss"] = trainer.evaluate().get("eval_loss")
    state = gather_state_dict(trainer.model_wrapped)  # collective: on every process
    failure = [None]
    if run.main:
        try:
            _check_finite_weights(state, steps)
            _save_final(run, trainer, state)
        except (NonFiniteError, IncompleteSaveError) as err:
            failure = [(type(err).__name__, _with_last_checkpoint(str(err), run.out))]
    if trainer.accelerator.num_processes > 1:
        broadcast_object_list(failure)
    if failure[0] is not None:
        kind, message = failure[0]
        raise (NonFiniteError if kind == "NonFiniteError" else IncompleteSaveError)(message)
    if run.main:
        shutil.rmtree(run.out / STAGING, ignore_errors=True)
        summary["train_loss"] = mean_loss(run.out / "metrics.jsonl")
        summary["final"] = str(run.out / "final")
        summary["settings_hash"] = settings_hash_of(run.cfg)
        atomic_write_json(run.out / "summary.json", summary)
    trainer.accelerator.wait_for_everyone()
    summary["final"] = str(run.out / "final")
    return summary


def _check_finite_weights(state: dict, steps: int) -> None:
    from .trainer import NonFiniteError

    bad = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise NonFiniteError(f"after step {steps} the weights are not finite ({bad[0]}, ...); no final/ model was "
                             "written; lower --lr or check the data")


def _with_last_checkpoint(message: str, out: Path) -> str:
    last = latest_checkpoint(out)
    return message + (f"; the last good checkpoint is {last} (--resume continues from it)" if last else
                      "; no checkpoint was saved")


# options that change how a run is watched, saved or resumed, not what it computes (the data files
# count by their bytes, not their paths)
_NOT_HASHED = ("output_dir", "progress", "resume", "resume_from_checkpoint", "overwrite", "num_workers", "report_to",
               "logging_steps", "save_steps", "save_total_limit", "data", "eval_data")


def settings_hash_of(cfg: TrainConfig) -> str:
    """sha256 of the settings that determine the trained model and of the bytes (not the paths) of
    its data files (:func:`deft.config.settings_hash`); recorded in ``summary.json`` so a caller can
    tell whether a finished run was made from the settings it would use now."""
    from ..config import settings_hash

    settings = {k: v for k, v in config_to_dict(cfg).items() if k not in _NOT_HASHED}
    return settings_hash(settings, {"data": cfg.data, "eval_data": cfg.eval_data})


def _model_to_save(run: _Run, trainer, state: dict):
    """The trained model whole on this process: the unwrapped model where the engine keeps it whole
    (single process, DDP, ZeRO-1/2), else the starting model loaded again, with the same LoRA
    adapter shape, holding the gathered ``state``."""
    from .sharding import copy_weights_into, is_sharded

    if not is_sharded(trainer.model_wrapped):
        return trainer.accelerator.unwrap_model(trainer.model)
    model = _load(run.cfg, run.cfg.model)
    if run.cfg.lora_rank:
        with zero3_init_disabled():
            model = _with_lora(run.cfg, model)
    copy_weights_into(model, state)
    return model


def _save_final(run: _Run, trainer, state: dict) -> None:
    """``final/``: a standard HF model directory (safetensors + tokenizer), checked complete
    (:func:`deft.train.final.check_complete`) before it is renamed into place. A LoRA model is
    saved merged (and its adapter under ``final/adapter``)."""
    from ..model.fused_forward import unpatch_fused_loss
    from .final import check_complete

    model = _model_to_save(run, trainer, state)
    unpatch_fused_loss(model)
    base_config = (model.get_base_model() if hasattr(model, "get_base_model") else model).config

    def write(tmp: Path):
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(tmp / "adapter")
            merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(tmp, safe_serialization=True)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        run.tokenizer.save_pretrained(tmp)
        check_complete(tmp, base_config, trust_remote_code=run.cfg.trust_remote_code)

    atomic_write_dir(run.out / "final", write)


def next_steps(summary: dict) -> list[str]:
    """Lines telling where a run's outputs are and what to run next."""
    out = summary["output_dir"]
    if summary.get("final"):
        return [f"outputs in {out}: final/ (model), metrics.jsonl (per step), summary.json, config.yaml",
                f"next: deft eval --model {summary['final']} --benchmark BENCH   |   deft plot --runs {out}"]
    last = latest_checkpoint(out)
    return [f"outputs in {out}: metrics.jsonl" + (f", {Path(last).name}/" if last else ""),
            f"next: deft train --out {out} --resume (continues from the last checkpoint)"]
