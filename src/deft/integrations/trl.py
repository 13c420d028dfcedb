"""deft's objectives inside TRL's ``SFTTrainer``, through the fused engine.

:class:`DeftSFTTrainer` is TRL's ``SFTTrainer`` with one change: the loss. TRL prepares the data
(prompt-completion, conversational, language-modelling; completion-only and assistant-only
labels; packing with position ids; PEFT; truncation) exactly as usual; then the model is patched
with :func:`deft.model.fused_forward.patch_fused_loss`, so a training forward runs the decoder,
hands the final hidden states ``[B, T, H]`` and the LM-head weight ``[V, H]`` to
:func:`deft.fused_token_loss` and returns the objective *summed* over the loss tokens; the
``[B*T, V]`` logits are never formed, for every objective (DEFT's ``a = Σ_v P_v²`` included).

Normalisation is TRL's: the sum is divided by ``num_items_in_batch``, the loss tokens of the whole
optimizer step (all gradient-accumulation micro-batches and, with
``average_tokens_across_devices``, all processes), so 1x8 and 8x1 accumulation give the same
update. Without it (evaluation) a micro-batch is divided by its own loss tokens.

Metrics: TRL's logits-based ``mean_token_accuracy`` cannot be computed without logits and is not
logged; ``entropy`` comes from the fused engine (mean predictive entropy over loss tokens, nats),
next to deft's token statistics ``mean_p``, ``mean_gate``, ``mean_focus`` (objectives with a focus
index), ``mean_entropy``, ``frac_p_below_1e-3`` and ``frac_p_above_0.5``
(:mod:`deft.train.stats`), token-weighted over the micro-batches and processes of each logging
interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

try:
    from trl import SFTConfig, SFTTrainer
except ImportError as err:  # an optional extra
    raise ImportError(f"deft.integrations.trl needs TRL ({err}): pip install 'deft-sft[trl]'") from err

from ..model.fused_forward import fused_extras, patch_fused_loss
from ..objectives import objective_inputs, parse_objective
from ..objectives.needs import missing_error
from ..train.config import OLD_POLICY_REFRESH
from ..train.stats import STAT_NAMES, StepStats
from ..train.sharding import is_partitioned, whole_copy, zero3_init_disabled
from ..train.trainer import OldPolicyRefresh

__all__ = ["DeftSFTConfig", "DeftSFTTrainer"]


@dataclass
class DeftSFTConfig(SFTConfig):
    """TRL's ``SFTConfig`` plus the deft objective.

    ``loss_type`` and ``label_smoothing_factor`` are TRL's own losses: leave them at their defaults
    and choose ``objective`` instead (``"dft"``, ``"label_smoothing:lam=0.1"``, ...).
    """

    objective: str = field(default="deft", metadata={
        "help": "deft objective spec, e.g. 'deft', 'nll', 'dft', 'cayley', 'power:alpha=0.5', 'kd' "
                "(see deft.list_objectives())"})
    objective_chunk_size: Optional[int] = field(default=None, metadata={
        "help": "token rows per chunk of the fused loss; None picks one from the shapes"})
    reference_model: Optional[str] = field(default=None, metadata={
        "help": "frozen reference model (HF id, local path or 'smollm2-135m') for sft_kl / asft; default: the PEFT "
                "model with its adapter disabled, else a frozen copy of the starting model"})
    teacher_model: Optional[str] = field(default=None, metadata={
        "help": "frozen teacher model with the same vocabulary, for kd / kd_hybrid / target_sft"})
    old_policy_refresh: int = field(default=OLD_POLICY_REFRESH, metadata={
        "help": "psft: copy the current weights into the old policy every this many optimizer steps"})

    def __post_init__(self):
        super().__post_init__()
        parse_objective(self.objective)  # unknown names / bad parameters fail here, before any model loads
        if self.objective_chunk_size is not None and self.objective_chunk_size <= 0:
            raise ValueError(f"objective_chunk_size: must be positive, got {self.objective_chunk_size}")
        if self.old_policy_refresh <= 0:
            raise ValueError(f"old_policy_refresh: must be positive, got {self.old_policy_refresh}")
        if self.loss_type != "nll":
            raise ValueError(f"loss_type={self.loss_type!r} is TRL's own loss; leave loss_type at 'nll' and set "
                             f"objective={self.loss_type!r} to train it through deft")
        if self.label_smoothing_factor:
            raise ValueError("label_smoothing_factor is TRL's own loss; set it to 0 and use "
                             f"objective='label_smoothing:lam={self.label_smoothing_factor}'")


def _load_frozen(spec: Any, device) -> torch.nn.Module:
    """A frozen model, whole on every process (frozen models never enter the engine), from a spec
    string (``deft.model.load_model``, outside ZeRO-3's partitioned init) or a module (gathered
    into a whole copy if ZeRO-3 partitioned it)."""
    if isinstance(spec, str):
        from ..model import load_model

        with zero3_init_disabled():
            spec = load_model(spec)
    elif is_partitioned(spec):
        spec = whole_copy(spec)
    return spec.to(device).eval().requires_grad_(False)


def _given(need, given: dict, args) -> Any:
    """The frozen model or spec supplied for ``need``: the trainer's keyword, else its config option."""
    if given.get(need.patch_arg) is not None:
        return given[need.patch_arg]
    return getattr(args, need.option, None) if need.option else None


class DeftSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` training a deft objective through the fused chunked loss.

    Takes every ``SFTTrainer`` argument; ``args`` must be a :class:`DeftSFTConfig`. The frozen
    models of the objective's inputs (:data:`deft.objectives.NEEDS`: one per need with a model) may
    be given as modules (``reference_model=``, ``teacher_model=``, or ``models={patch_arg: model}``
    for registered needs), as specs in the config option the need names, or take the need's
    default. ``compute_loss_func`` is refused: the objective is the loss.
    """

    _tag_names = ["trl", "sft", "deft"]

    def __init__(self, model, args: Optional[DeftSFTConfig] = None, *, reference_model=None, teacher_model=None,
                 models: Optional[dict] = None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = DeftSFTConfig(f"{str(name).split('/')[-1]}-DeftSFT")
        if not isinstance(args, DeftSFTConfig):
            raise ValueError(f"DeftSFTTrainer needs args=DeftSFTConfig(...), got {type(args).__name__}")
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("DeftSFTTrainer computes the loss from args.objective; do not pass compute_loss_func")
        self.objective = parse_objective(args.objective)
        given = {"reference": reference_model, "teacher": teacher_model, **(models or {})}
        for need in objective_inputs(self.objective):  # a missing frozen model fails before TRL prepares the data
            if need.patch_arg and _given(need, given, args) is None and not need.default:
                raise missing_error(self.objective.spec, need, "config" if need.option else "patch")
        super().__init__(model, args=args, **kwargs)
        self.old_policy = self._attach_objective(given)
        # the patched forward returns a sum over loss tokens, normalised in compute_loss over the whole step
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self._deft_stats = {"train": StepStats(), "eval": StepStats()}

    def _attach_objective(self, given: dict):
        """Build the frozen model of each of the objective's inputs (:func:`objective_inputs`, the
        same loop as ``deft train``) and patch ``self.model``; returns the psft old-policy snapshot
        (or ``None``). Defaults: a ``"model"`` need with a default (the reference) is the PEFT model
        with its adapter disabled, else a frozen copy of the starting model; a ``"label_logprobs"``
        need (the old policy) a frozen snapshot refreshed every ``old_policy_refresh`` steps."""
        args, obj, device = self.args, self.objective, self.args.device
        frozen, snapshot = {}, None  # need name -> frozen model (or "adapter")
        for need in objective_inputs(obj):
            if need.patch_arg is None:
                continue
            spec = _given(need, given, args)
            if spec is not None:
                frozen[need.name] = _load_frozen(spec, device)
            elif need.source == "model":
                peft = hasattr(self.model, "disable_adapter")
                frozen[need.name] = "adapter" if peft else _load_frozen(whole_copy(self.model), device)
            else:
                frozen[need.name] = snapshot = _load_frozen(whole_copy(self.model), device)
                self.add_callback(OldPolicyRefresh(snapshot, args.old_policy_refresh, self))
        patch_fused_loss(self.model, obj, chunk_size=args.objective_chunk_size, models=frozen)
        return snapshot

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The objective summed over the micro-batch's loss tokens (fused: no logits), divided by
        ``num_items_in_batch`` (the step's loss tokens on all processes, times the number of
        processes since DDP averages gradients) or, when it is not given, by this micro-batch's
        loss tokens."""
        mode = "train" if self.model.training else "eval"
        inputs = {k: v for k, v in inputs.items() if k not in ("use_cache", "output_router_logits")}
        if self.aux_loss_enabled:  # MoE: the patched forward adds coef * router load-balancing loss
            inputs["output_router_logits"] = True
        outputs = model(**inputs)
        num_tokens, stats = fused_extras(model, outputs)
        if self.aux_loss_enabled and outputs.aux_loss is not None:
            aux = self.accelerator.gather_for_metrics(outputs.aux_loss.detach().reshape(1)).mean().item()
            self._metrics[mode]["aux_loss"].append(aux)
        loss = outputs.loss
        if num_items_in_batch is not None:
            denom = torch.as_tensor(num_items_in_batch, device=loss.device, dtype=loss.dtype).clamp(min=1)
            loss = loss / denom
            if self.args.average_tokens_across_devices:
                loss = loss * (self.accelerator.num_processes // self._tp_size)
        else:
            loss = loss / max(int(num_tokens), 1)
        self._deft_stats[mode].add(outputs.loss, stats, self._input_tokens(inputs, mode))
        if return_outputs:  # logits for compute_metrics: one extra forward without labels
            with torch.no_grad():
                outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        return (loss, outputs) if return_outputs else loss

    def _input_tokens(self, inputs: dict, mode: str) -> int:
        """Non-padding input tokens of this micro-batch; also TRL's running ``num_tokens`` metric."""
        if "attention_mask" in inputs:
            local = inputs["attention_mask"].sum()
        else:  # packed / padding-free rows: every position is a token
            local = torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
        if mode == "train":
            total = self.accelerator.gather_for_metrics(local.reshape(1)).sum().item()
            self._total_train_tokens += total // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return int(local)

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """Save the trained model (a PEFT model: its adapter) as a standard HF folder, complete under
        every engine: the weights are gathered first (ZeRO-3 without
        ``stage3_gather_16bit_weights_on_model_save``, FSDP with sharded state dicts) and the written
        files are checked against the model's own state dict before they are moved into
        ``output_dir`` (:func:`deft.train.final.save_gathered`); an incomplete save raises
        :class:`~deft.train.final.IncompleteSaveError` on every process. Checkpoints
        (``_internal_call``) are the engine's own, as in TRL."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call)
        from accelerate.utils import broadcast_object_list

        from ..train.final import IncompleteSaveError, save_gathered
        from ..train.sharding import gather_state_dict

        output_dir = output_dir or self.args.output_dir
        state = gather_state_dict(self.model_wrapped)  # collective: on every process
        failure = [None]
        if self.accelerator.is_main_process:
            try:
                save_gathered(self.accelerator.unwrap_model(self.model), output_dir, state, self.processing_class)
            except IncompleteSaveError as err:
                failure = [str(err)]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(failure)
        if failure[0] is not None:
            raise IncompleteSaveError(failure[0])
        self.accelerator.wait_for_everyone()

    def log(self, logs: dict, start_time: Optional[float] = None) -> None:
        """Add the interval's token statistics (all micro-batches and processes) to TRL's metrics."""
        mode = "train" if self.model.training else "eval"
        stats = self._deft_stats[mode]
        stats.reduce(self.accelerator)
        result = stats.result()
        stats.reset()
        for key in STAT_NAMES:
            if key in result:
                self._metrics[mode][key] = [result[key]]
        if "mean_entropy" in result:
            self._metrics[mode]["entropy"] = [result["mean_entropy"]]  # TRL's name for the same quantity
        super().log(logs, start_time)
