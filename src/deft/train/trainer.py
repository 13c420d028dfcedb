"""``deft train``: SFT of any HF causal LM with any objective, on HF ``Trainer`` / ``accelerate``.

* The model's forward is patched (:mod:`deft.model.fused_forward`) to return the objective summed
  over loss tokens; :class:`DeftTrainer` divides it by the number of loss tokens in the whole
  optimizer step (all micro-batches, all processes: HF's ``num_items_in_batch``), so 1x8 and 8x1
  accumulation give the same update.
* Multi-GPU / multi-node (DDP, FSDP, DeepSpeed) come from ``accelerate launch``; deft adds no
  distributed code. On CPU, several processes use the gloo backend.
* ``metrics.jsonl`` gets one line per optimizer step (loss, lr, grad_norm, tokens, tokens_per_s and
  the token statistics of :mod:`deft.train.stats`).
* Checkpoints are written to ``output_dir/.staging`` and renamed into place once complete, so a
  crash never leaves a half-written ``checkpoint-N``; ``resume`` continues from the newest one
  with optimizer, scheduler and RNG state.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import yaml

from ..data.dataset import tokenize_to_dataset
from ..model import load_model, load_tokenizer
from ..model.fused_forward import patch_fused_loss
from ..objectives import parse_objective
from .collate import PackedCollator, PaddingCollator, pack_examples
from .config import TrainConfig, config_to_dict
from .stats import StepStats

__all__ = ["DeftTrainer", "build_examples", "train", "latest_checkpoint"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_examples(cfg: TrainConfig, tokenizer, source: str, log=print):
    """Read, validate and tokenise ``source`` into a memory-mapped ``datasets.Dataset``
    (:func:`deft.data.tokenize_to_dataset`: the records stream into an Arrow file, so a large
    file never becomes a Python list); raise :class:`~deft.data.validate.DataError` listing
    ``FILE:LINE`` problems unless ``cfg.skip_invalid``."""
    dataset, report = tokenize_to_dataset(source, tokenizer, template=cfg.template, max_length=cfg.max_length,
                                          truncation=cfg.truncation, all_turns=cfg.all_turns,
                                          skip_invalid=cfg.skip_invalid)
    log(f"data {source}: {report.summary()}" + (f" (skipped {report.invalid} invalid)" if report.invalid else ""))
    return dataset


def latest_checkpoint(output_dir: str) -> Optional[str]:
    """The newest complete ``checkpoint-N`` directory, or ``None``."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    steps = [(int(p.name.split("-")[1]), p) for p in root.glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[1].isdigit() and (p / "trainer_state.json").exists()]
    return str(max(steps)[1]) if steps else None


def _trainer_base():
    from transformers import Trainer

    return Trainer


class DeftTrainer(_trainer_base()):
    """HF ``Trainer`` that normalises the fused loss by the step's loss tokens, records token
    statistics, writes ``metrics.jsonl`` and saves checkpoints atomically."""

    def __init__(self, *args, metrics_path: Optional[str] = None, progress: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        # the patched forward returns a sum: HF then counts the step's loss tokens (all
        # micro-batches, all processes) and does not rescale by the accumulation steps
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self.step_stats = StepStats()
        self.metrics_path = metrics_path
        self._last_log_time = None
        self._bar = None
        self._progress = progress
        self.old_policy = None  # psft: the frozen old-policy snapshot, saved with each checkpoint

    # -- loss --------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._last_log_time is None:
            self._last_log_time = time.perf_counter()
        input_tokens = int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else int(
            inputs["input_ids"].numel())
        outputs = model(**inputs)
        if model.training:
            self.step_stats.add(outputs.loss, outputs.stats, input_tokens)
        loss = outputs.loss
        if num_items_in_batch is not None:
            loss = loss / torch.clamp(torch.as_tensor(num_items_in_batch, device=loss.device, dtype=loss.dtype), min=1)
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        elif outputs.num_tokens:
            loss = loss / outputs.num_tokens
        return (loss, outputs) if return_outputs else loss

    # -- logging -----------------------------------------------------------------------------
    def log(self, logs: dict, start_time: Optional[float] = None) -> None:
        if "loss" in logs and "grad_norm" in logs:
            self.step_stats.reduce(self.accelerator)
            stats = self.step_stats.result()
            self.step_stats.reset()
            now = time.perf_counter()
            elapsed = max(now - (self._last_log_time or now), 1e-9)
            self._last_log_time = now
            row = {"step": self.state.global_step, "loss": stats.pop("loss"), "lr": logs.get("learning_rate"),
                   "grad_norm": logs.get("grad_norm"), "tokens": stats.pop("tokens"),
                   "input_tokens": stats.pop("input_tokens")}
            row["tokens_per_s"] = row["input_tokens"] / elapsed
            row.update(stats)
            row["epoch"] = self.state.epoch
            if self.metrics_path and self.is_world_process_zero():
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            self._update_bar(row)
            logs = {**logs, "tokens_per_s": row["tokens_per_s"], **{k: v for k, v in stats.items()}}
        super().log(logs, start_time)

    def _update_bar(self, row: dict) -> None:
        if not (self._progress and self.is_world_process_zero()):
            return
        from tqdm.auto import tqdm

        if self._bar is None:
            self._bar = tqdm(total=self.state.max_steps, initial=row["step"] - 1, desc="train", unit="step",
                             dynamic_ncols=True, file=sys.stderr)
        self._bar.update(row["step"] - self._bar.n)
        post = {"loss": f"{row['loss']:.4f}", "tok/s": f"{row['tokens_per_s']:.0f}"}
        if "mean_p" in row:
            post["p"] = f"{row['mean_p']:.3f}"
        if "mean_focus" in row:
            post["focus"] = f"{row['mean_focus']:.3f}"
        self._bar.set_postfix(post, refresh=False)

    def close_progress(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- checkpoints -------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        run_dir = self._get_output_dir(trial=trial)
        staging = os.path.join(run_dir, ".staging")
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.is_world_process_zero():
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self._get_output_dir = lambda trial=None: staging  # the parent writes under the staging dir
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        self.accelerator.wait_for_everyone()
        if self.is_world_process_zero():
            if self.old_policy is not None:  # psft: the snapshot is part of the state
                save_old_policy(self.old_policy, Path(staging) / name)
            final = os.path.join(run_dir, name)
            if os.path.exists(final):  # the same step saved twice: keep the complete one
                shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
            else:
                os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging, ignore_errors=True)
            self._rotate(run_dir)
        self.accelerator.wait_for_everyone()

    def _rotate(self, run_dir: str) -> None:
        limit = self.args.save_total_limit
        if not limit:
            return
        done = sorted((int(p.name.split("-")[1]), p) for p in Path(run_dir).glob("checkpoint-*")
                      if p.name.split("-")[1].isdigit())
        for _, path in done[:-limit]:
            shutil.rmtree(path, ignore_errors=True)


def _write_atomic_dir(target: Path, writer) -> None:
    """Call ``writer(tmp_dir)`` and move the result to ``target`` in one rename."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer(tmp)
    old = target.with_name(target.name + ".old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep only the metric lines up to ``step`` (resume after a crash)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


OLD_POLICY_FILE = "old_policy.safetensors"


def save_old_policy(old_policy, checkpoint: Path) -> None:
    """Write the psft old-policy snapshot into a checkpoint directory (safetensors; tied
    weights handled by ``safetensors.torch.save_model``)."""
    from safetensors.torch import save_model

    save_model(old_policy, str(Path(checkpoint) / OLD_POLICY_FILE))


def load_old_policy(old_policy, checkpoint: Path) -> bool:
    """Restore the psft old-policy snapshot from a checkpoint; ``False`` when it has none."""
    from safetensors.torch import load_model as load_safetensors_model

    path = Path(checkpoint) / OLD_POLICY_FILE
    if not path.exists():
        return False
    load_safetensors_model(old_policy, str(path), device=str(next(old_policy.parameters()).device))
    return True


class _OldPolicyRefresh:
    """psft: copy the current weights into the old-policy snapshot every ``every`` steps."""

    def __init__(self, old_policy, every: int):
        self.old_policy, self.every = old_policy, max(1, every)

    def callback(self):
        from transformers import TrainerCallback

        outer = self

        class Refresh(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step % outer.every == 0 and model is not None:
                    src = model.module if hasattr(model, "module") else model
                    outer.old_policy.load_state_dict(src.state_dict())
        return Refresh()


def _load(cfg: TrainConfig, spec: str):
    return load_model(spec, dtype=_DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code)


def train(cfg: TrainConfig, log=print) -> dict:
    """Run one training job; returns a summary dict (steps, final loss, paths)."""
    from transformers import TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    if not cfg.data:
        raise ValueError("no training data: pass --data FILE (records from 'deft data')")
    objective = parse_objective(cfg.objective)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)

    resume_from = latest_checkpoint(cfg.output_dir) if cfg.resume else None
    if cfg.resume and resume_from is None:
        log(f"no checkpoint in {cfg.output_dir}: starting from scratch")
    if not cfg.resume and (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()

    tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    examples = build_examples(cfg, tokenizer, cfg.data, log=log)
    eval_examples = build_examples(cfg, tokenizer, cfg.eval_data, log=log) if cfg.eval_data else None
    if cfg.packing:
        examples = pack_examples(examples, cfg.max_length)
        eval_examples = pack_examples(eval_examples, cfg.max_length) if eval_examples else None
        collator = PackedCollator(tokenizer.pad_token_id)
        log(f"packing: {len(examples)} rows of at most {cfg.max_length} tokens")
    else:
        collator = PaddingCollator(tokenizer.pad_token_id)

    model = _load(cfg, cfg.model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    reference = teacher = old_policy = None
    if "ref" in objective.needs:
        if cfg.reference_model:
            reference = _load(cfg, cfg.reference_model)
        elif cfg.lora_rank:
            reference = "adapter"
        else:
            reference = copy.deepcopy(model)
    if cfg.lora_rank:
        from peft import LoraConfig, get_peft_model

        targets = cfg.target_modules if cfg.target_modules == "all-linear" else [
            m.strip() for m in cfg.target_modules.split(",") if m.strip()]
        model = get_peft_model(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout, target_modules=targets,
                                                 task_type="CAUSAL_LM"))
    if "teacher" in objective.needs:
        if not cfg.teacher_model:
            raise ValueError(f"objective '{objective.spec}' needs --teacher-model (same vocabulary as the model)")
        teacher = _load(cfg, cfg.teacher_model)
    if "old_logprobs" in objective.needs:
        old_policy = copy.deepcopy(model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for frozen in (reference, teacher, old_policy):
        if isinstance(frozen, torch.nn.Module):
            frozen.to(device).eval().requires_grad_(False)
    patch_fused_loss(model, objective, chunk_size=cfg.chunk_size, reference=reference, teacher=teacher,
                     old_policy=old_policy, fused=cfg.fused)

    (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    if resume_from:
        step = json.loads((Path(resume_from) / "trainer_state.json").read_text())["global_step"]
        _truncate_metrics(out / "metrics.jsonl", step)
        log(f"resuming from {resume_from} (step {step})")

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else 0.0,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        optim="adamw_torch",
        logging_steps=1,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if (eval_examples and cfg.eval_steps) else "no",
        eval_steps=cfg.eval_steps or None,
        report_to=[] if cfg.report_to == "none" else [r.strip() for r in cfg.report_to.split(",")],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=cfg.num_workers,
        bf16=cfg.dtype == "bfloat16" and device == "cuda",
        use_cpu=device == "cpu",
        ddp_backend="gloo" if (distributed and device == "cpu") else None,
        average_tokens_across_devices=True,
        ddp_find_unused_parameters=False,
        prediction_loss_only=True,
    )
    trainer = DeftTrainer(
        model=model, args=args, train_dataset=examples, eval_dataset=eval_examples, data_collator=collator,
        metrics_path=str(out / "metrics.jsonl"), progress=cfg.progress,
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # metrics.jsonl and the progress bar replace its dict dumps
    if old_policy is not None:
        trainer.old_policy = old_policy
        trainer.add_callback(_OldPolicyRefresh(old_policy, cfg.old_policy_refresh).callback())
        if resume_from and not load_old_policy(old_policy, resume_from):
            log(f"{resume_from} has no {OLD_POLICY_FILE}: the psft old policy is the starting model until its "
                "next refresh, so this run will differ from an uninterrupted one")
    result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.close_progress()
    summary = {"steps": trainer.state.global_step, "train_loss": result.training_loss, "output_dir": str(out)}
    if eval_examples:
        metrics = trainer.evaluate()
        summary["eval_loss"] = metrics.get("eval_loss")
    if trainer.is_world_process_zero():
        final = out / "final"
        _save_final(trainer.model, tokenizer, final)
        summary["final"] = str(final)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    trainer.accelerator.wait_for_everyone()
    return summary


def _save_final(model, tokenizer, target: Path) -> None:
    """``final/``: a standard HF model directory (safetensors + tokenizer). A LoRA model is saved
    merged (and its adapter under ``final/adapter``)."""
    from ..model.fused_forward import unpatch_fused_loss

    model = model.module if hasattr(model, "module") else model
    unpatch_fused_loss(model)

    def write(tmp: Path):
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(tmp / "adapter")
            merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(tmp, safe_serialization=True)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    _write_atomic_dir(target, write)


def steps_per_epoch(n_examples: int, cfg: TrainConfig, world_size: int = 1) -> int:
    return math.ceil(n_examples / (cfg.batch_size * world_size)) // cfg.grad_accum
