"""``DeftTrainer``: the HF ``Trainer`` with deft's loss normalisation, statistics and safe checkpoints.

* The model's forward is patched (:mod:`deft.model.fused_forward`) to return the objective summed
  over loss tokens. :meth:`DeftTrainer.compute_loss` normalises it:

  - ``tokens`` (default): divided by the loss tokens of the whole optimizer step (all
    micro-batches, all processes: HF's ``num_items_in_batch``) and multiplied by the number of
    processes (DDP averages gradients), so the step minimises ``sum_i L_i / sum_i n_i`` and 1x8 and
    8x1 accumulation give the same update;
  - ``micro_batch`` (the reference code's scheme): each micro-batch divided by its own loss tokens
    (its selected tokens for the ``Only*`` objectives: ``outputs.num_tokens``) and by the number of
    micro-batches of the step; DDP's average over processes does the rest.

* :meth:`DeftTrainer.log` writes one ``metrics.jsonl`` line per optimizer step (loss, lr,
  grad_norm, tokens, tokens_per_s and the statistics of :mod:`deft.train.stats`), passes the
  statistics on to the experiment trackers, and stops the run with :class:`NonFiniteError` when the
  loss or the gradient norm is not finite (before that step is saved).
* Checkpoints: HF writes each one under ``OUT/.staging`` (the trainer's ``output_dir``);
  :class:`AtomicCheckpoints` (a public ``on_save`` hook) adds the psft snapshot and renames it into
  ``OUT/checkpoint-N`` once every process has written its part, then drops the oldest.
* The warm-up: :meth:`DeftTrainer.create_scheduler` turns ``warmup_ratio`` into a step count of
  the resolved number of optimizer steps, which every transformers version reads the same way.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from transformers import Trainer, TrainerCallback

from ..model.fused_forward import fused_extras
from .rundir import latest_checkpoint
from .stats import StepStats

__all__ = ["DeftTrainer", "AtomicCheckpoints", "OldPolicyRefresh", "NonFiniteError", "warmup_steps",
           "save_old_policy", "load_old_policy", "OLD_POLICY_FILE"]

OLD_POLICY_FILE = "old_policy.safetensors"


class NonFiniteError(ValueError):
    """The loss or the gradient norm of an optimizer step is not finite."""


def warmup_steps(ratio: float, total_steps: int) -> int:
    """``ceil(ratio * total_steps)`` warm-up steps (rounded first, so 0.3 x 10 is 3, not 4)."""
    return math.ceil(round(ratio * total_steps, 6))


class DeftTrainer(Trainer):
    """HF ``Trainer`` that normalises the fused loss (``tokens`` or ``micro_batch``), records token
    statistics, writes ``metrics.jsonl`` and refuses non-finite steps."""

    def __init__(self, *args, metrics_path: Optional[str] = None, progress: bool = True,
                 loss_normalization: str = "tokens", warmup_ratio: float = 0.0, run_dir: Optional[str] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        # the patched forward returns a sum: HF then counts the step's loss tokens (all
        # micro-batches, all processes) and does not rescale by the accumulation steps
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self.loss_normalization = loss_normalization
        self.warmup_ratio = warmup_ratio
        self.step_stats = StepStats(loss_normalization)
        self.metrics_path = metrics_path
        self.run_dir = run_dir
        self._last_log_time = None
        self._bar = None
        self._progress = progress
        self.old_policy = None  # psft: the frozen old-policy snapshot, saved with each checkpoint

    # -- loss --------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The step's share of the normalised loss (see the module docstring); ``outputs.loss`` is
        the micro-batch's summed objective, ``outputs.num_tokens`` the denominator of its mean (its loss
        tokens, or its selected tokens for the reference's ``Only*`` objectives)."""
        if self._last_log_time is None:
            self._last_log_time = time.perf_counter()
        input_tokens = int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else int(
            inputs["input_ids"].numel())
        outputs = model(**inputs)
        num_tokens, stats = fused_extras(model, outputs)
        if model.training:
            self.step_stats.add(outputs.loss, stats, input_tokens)
        loss = outputs.loss
        if self.loss_normalization == "micro_batch":
            micro_batches = getattr(self, "current_gradient_accumulation_steps", None) or \
                self.args.gradient_accumulation_steps
            loss = loss / max(num_tokens, 1) / (micro_batches if model.training else 1)
        elif num_items_in_batch is not None:
            loss = loss / torch.clamp(torch.as_tensor(num_items_in_batch, device=loss.device, dtype=loss.dtype), min=1)
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        elif num_tokens:
            loss = loss / num_tokens
        return (loss, outputs) if return_outputs else loss

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """HF's scheduler with ``ceil(warmup_ratio * num_training_steps)`` warm-up steps, given to HF
        as an integer count (read the same way by every transformers version)."""
        self.args.warmup_steps = warmup_steps(self.warmup_ratio, num_training_steps)
        return super().create_scheduler(num_training_steps, optimizer)

    # -- logging -----------------------------------------------------------------------------
    def log(self, logs: dict, start_time: Optional[float] = None) -> None:
        if "loss" in logs:
            row = self._step_row(logs)
            self._check_finite(row)
            if self.metrics_path and self.is_world_process_zero():
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            self._update_bar(row)
            extra = {k: v for k, v in row.items() if k not in ("step", "loss", "lr", "grad_norm", "epoch")}
            logs = {**logs, **extra}  # the trackers get deft's statistics too
        super().log(logs, start_time)

    def _step_row(self, logs: dict) -> dict:
        """The step's ``metrics.jsonl`` row from the statistics of all its micro-batches and processes."""
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
        return row

    def _check_finite(self, row: dict) -> None:
        bad = [f"{key} is {row[key]}" for key in ("loss", "grad_norm")
               if row.get(key) is not None and not math.isfinite(row[key])]
        if not bad:
            return
        self.close_progress()
        last = latest_checkpoint(self.run_dir) if self.run_dir else None
        keep = (f"the last good checkpoint is {last} (--resume continues from it)" if last
                else "no checkpoint was saved before it")
        raise NonFiniteError(f"step {row['step']}: {' and '.join(bad)}; training stopped without saving this step "
                             f"or a final/ model; {keep}; lower --lr or check the data")

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


class AtomicCheckpoints(TrainerCallback):
    """Moves each checkpoint HF wrote under ``args.output_dir`` (the staging folder) into
    ``run_dir/checkpoint-N`` in one rename, after every process has written its part (model,
    optimizer, per-process RNG state) and the psft snapshot has been added; keeps the newest
    ``keep`` checkpoints. A crash at any moment leaves only complete checkpoints in ``run_dir``."""

    def __init__(self, trainer: DeftTrainer, run_dir: str, keep: Optional[int]):
        self.trainer, self.run_dir, self.keep = trainer, Path(run_dir), keep

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            name = f"checkpoint-{state.global_step}"
            staged, final = Path(args.output_dir) / name, self.run_dir / name
            if trainer.old_policy is not None:  # psft: the snapshot is part of the state
                save_old_policy(trainer.old_policy, staged)
            if final.exists():  # the same step saved twice: keep the complete one
                shutil.rmtree(staged, ignore_errors=True)
            else:
                os.replace(staged, final)
            self._rotate()
        trainer.accelerator.wait_for_everyone()
        return control

    def _rotate(self) -> None:
        if not self.keep:
            return
        done = sorted((int(p.name.split("-")[1]), p) for p in self.run_dir.glob("checkpoint-*")
                      if p.name.split("-")[1].isdigit())
        for _, path in done[:-self.keep]:
            shutil.rmtree(path, ignore_errors=True)


class OldPolicyRefresh(TrainerCallback):
    """psft: copy the current weights into the old-policy snapshot every ``every`` optimizer steps.

    The snapshot is whole on every process; under ZeRO-3 and FSDP the trained weights are gathered
    first (:func:`deft.train.sharding.gather_state_dict`, a collective call every process makes at
    the same step)."""

    def __init__(self, old_policy, every: int, trainer):
        self.old_policy, self.every, self.trainer = old_policy, max(1, every), trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            from .sharding import gather_state_dict

            trainer = self.trainer
            weights = gather_state_dict(trainer.model_wrapped, everywhere=True)
            self.old_policy.load_state_dict(weights)
        return control


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
