"""One cell of the paper's Tables 1-3 as a deft recipe: the reference's one-click generator
(``scripts/one_click/TEMPLATE.py`` and ``script_generator.py`` of ``luludus/DEFT``) rewritten as
data, so that ``deft compare --protocol paper --regime R --model-key K`` trains and evaluates
exactly what the paper's cell was made from, and ``--dry-run`` prints it.

Facts taken from the reference (verified in its sources):

* ``MODEL_MAPPING``: the seven model keys and their hub ids (:data:`PAPER_MODELS`).
* ``HYPERPARAMETER_MAPPING``: which keys each regime has and their learning rate — 2e-5 for
  ``llama-3.1-8b``, 5e-5 for every other — and the math evaluation prompt type ("case"). Its
  medical entry is spelled ``llama-3.1-3b``, a key its generator does not accept; the paper's
  Table 2 row is LLaMA-3.2-3B, so :data:`REFERENCE_CELLS` lists ``llama-3.2-3b``.
* The generated scripts: global batch 256 (``data.train_batch_size``, divided over the GPUs),
  micro-batch per GPU 4 (math) or 16 (medical, figfont), ``max_length`` 3072 (math) or 800,
  ``optim.weight_decay`` 1e-5 for figfont only (math and medical keep the trainer default 0.01),
  one epoch, bf16, evaluation of the last checkpoint; ``nproc_per_node`` defaults to 2.
* The trainer defaults (``sft_trainer.yaml``): AdamW with betas (0.9, 0.95), cosine schedule with
  warm-up ratio 0.1, gradient clipping 1.0, right truncation.
* Evaluation: math with the Qwen2.5-Math harness, 16 samples at temperature 1, top-p 1, seed 0,
  at most 4096 new tokens, on minerva_math, olympiadbench, aime24, amc23 and math_oai (MATH500);
  medical greedy with at most 8000 new tokens on the m1 file; figfont greedy with at most 5 new
  tokens on test items 40,000-44,999.
* Data: math ``gaotang/numina-cot-subset-67k``, medical ``gaotang/medical_sft_processed``,
  figfont reasoning-gym items 0-39,999 at seed 42 (``deft data figfont --protocol paper``).

:class:`PaperCellConfig` holds the options of a cell; :func:`plan_paper_cell` builds its whole
recipe (:class:`PaperPlan`): the ``deft data``
configs, one validated :class:`~deft.train.config.TrainConfig` per objective and the ``deft eval``
settings of the base model and every run; :func:`format_plan` prints it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from ..config import ConfigError, option, parse_pairs

__all__ = ["PAPER_MODELS", "REFERENCE_CELLS", "REGIME_PRESETS", "TRAINER_DEFAULTS", "DEFAULT_OBJECTIVES",
           "REFERENCE_OBJECTIVES", "PaperCellConfig", "PaperPlan", "PlanStep", "reference_objective",
           "paper_train_options", "option_pairs", "plan_paper_cell", "format_plan", "plan_to_dict"]

from ..data.paper import PAPER_MODELS

#: regime -> model key -> (learning rate, math prompt type) of HYPERPARAMETER_MAPPING
REFERENCE_CELLS: dict[str, dict[str, tuple[float, Optional[str]]]] = {
    "math": {"qwen-2.5-math-1.5b": (5e-5, "qwen-boxed"), "qwen-2.5-math-7b": (5e-5, "qwen-boxed"),
             "llama-3.1-8b": (2e-5, "llama-base-boxed-with-bos"), "deepseek-math-7b": (5e-5, "deepseek-math")},
    "medical": {"llama-3.2-3b": (5e-5, None), "llama-3.1-8b": (2e-5, None), "qwen-2.5-1.5b": (5e-5, None),
                "qwen-2.5-math-7b": (5e-5, None)},
    "figfont": {"qwen-2.5-7b": (5e-5, None), "qwen-2.5-1.5b": (5e-5, None), "llama-3.1-8b": (2e-5, None),
                "llama-3.2-3b": (5e-5, None)},
}

#: what the generated script of each regime sets (training, data, evaluation)
REGIME_PRESETS: dict[str, dict] = {
    "math": {"max_length": 3072, "micro_batch": 4, "weight_decay": 0.01, "table": 1,
             "data_input": "gaotang/numina-cot-subset-67k", "data_n": 67_000, "checkpoint": "global_step_264",
             "benchmarks": ("minerva_math", "olympiadbench", "aime24", "amc23", "math500"),
             "eval": {"k": 16, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4096, "seed": 0}},
    "medical": {"max_length": 800, "micro_batch": 16, "weight_decay": 0.01, "table": 2,
                "data_input": "gaotang/medical_sft_processed", "data_n": None, "checkpoint": "global_step_91",
                "benchmarks": ("medical:{medical_eval}",),
                "eval": {"k": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8000}},
    "figfont": {"max_length": 800, "micro_batch": 16, "weight_decay": 1e-5, "table": 3,
                "data_input": None, "data_n": 40_000, "checkpoint": "global_step_156",
                "benchmarks": ("figfont",),
                "eval": {"k": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 5, "n": 5000}},
}

#: the reference trainer's defaults the scripts keep (sft_trainer.yaml)
TRAINER_DEFAULTS = {"global_batch": 256, "epochs": 1.0, "lr_scheduler": "cosine", "warmup_ratio": 0.1,
                    "max_grad_norm": 1.0, "truncation": "right", "dtype": "bfloat16", "adam_betas": (0.9, 0.95)}

DEFAULT_OBJECTIVES = ("original", "p", "Cayley_Trans", "DEFT")
#: the reference's objective names (trainer.objective_trans), and EAFT (the paper's baseline)
REFERENCE_OBJECTIVES = ("original", "logp", "p", "Cayley_Trans", "DEFT", "GeneralFamily-<alpha>", "OnlyTopP-<tau>",
                        "OnlyBottomP-<tau>", "OnlyTopLogP-<tau>", "OnlyBottomLogP-<tau>", "EAFT")


@dataclass(frozen=True)
class PlanStep:
    """One step of a plan: ``kind`` (data, train, eval), its ``name``, the command that runs it
    (``argv``, starting with ``deft`` or an ``accelerate launch`` prefix) and the resolved
    ``settings`` (a config object or an options mapping)."""

    kind: str
    name: str
    argv: tuple[str, ...]
    settings: object

    @property
    def command(self) -> str:
        """The command as a shell line."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class PaperPlan:
    """The recipe of one paper cell; ``steps`` in the order they run."""

    regime: str
    model_key: str
    model: str
    family: str
    n_gpus: int
    out: str
    objectives: tuple[tuple[str, str], ...]  # (name as given, deft spec)
    hyper: dict  # every training hyper-parameter shared by the runs
    evaluation: dict  # the evaluation settings shared by every model
    steps: tuple[PlanStep, ...] = ()
    notes: tuple[str, ...] = field(default=())


def _regime_error(regime: str) -> ValueError:
    return ValueError(f"--regime {regime!r}: unknown; use one of {', '.join(REFERENCE_CELLS)}")


def _check_cell(regime: str, model_key: str) -> None:
    if regime not in REFERENCE_CELLS:
        raise _regime_error(regime)
    keys = REFERENCE_CELLS[regime]
    if model_key not in keys:
        known = "" if model_key in PAPER_MODELS else f" (the reference's keys: {', '.join(PAPER_MODELS)})"
        raise ValueError(f"--model-key {model_key!r}: the paper has no {regime} cell for it{known}; "
                         f"use one of {', '.join(keys)}")


def reference_objective(name: str) -> str:
    """The deft spec of an objective named as the reference names it (``original``, ``p``,
    ``Cayley_Trans``, ``DEFT``, ``GeneralFamily-<alpha>``, ``OnlyTopP-<tau>``, ...), ``EAFT`` (the
    paper's baseline) or any deft spec; ``ValueError`` listing the valid names otherwise."""
    from ..objectives import parse_objective

    text = str(name).strip()
    if text == "EAFT":
        text = "eaft"
    try:
        return parse_objective(text).spec
    except (KeyError, ValueError):
        raise ValueError(f"--objectives: {name!r} is not an objective; use the reference's names "
                         f"({', '.join(REFERENCE_OBJECTIVES)}) or a deft spec (see 'deft objectives')") from None


def _gradient_accumulation(regime: str, n_gpus: int) -> int:
    micro = REGIME_PRESETS[regime]["micro_batch"]
    per_step = micro * n_gpus
    if n_gpus < 1 or TRAINER_DEFAULTS["global_batch"] % per_step:
        valid = [g for g in (1, 2, 4, 8, 16) if TRAINER_DEFAULTS["global_batch"] % (micro * g) == 0]
        raise ValueError(f"--n-gpus {n_gpus}: the global batch of 256 must split into micro-batches of {micro} on "
                         f"every GPU; use {', '.join(map(str, valid))}")
    return TRAINER_DEFAULTS["global_batch"] // per_step


def paper_train_options(regime: str, model_key: str, *, n_gpus: int = 1) -> dict:
    """The ``deft train`` options of the reference's recipe for a cell (without model, data,
    objective and output folder): learning rate, micro-batch and accumulation for ``n_gpus``
    processes (global batch 256), epochs, schedule, weight decay, lengths, dtype, AdamW betas,
    protocol, and the model key (the prompt family of a local ``model``)."""
    _check_cell(regime, model_key)
    preset = REGIME_PRESETS[regime]
    return {"protocol": "paper", "lr": REFERENCE_CELLS[regime][model_key][0],
            "batch_size": preset["micro_batch"], "grad_accum": _gradient_accumulation(regime, n_gpus),
            "epochs": TRAINER_DEFAULTS["epochs"], "lr_scheduler": TRAINER_DEFAULTS["lr_scheduler"],
            "warmup_ratio": TRAINER_DEFAULTS["warmup_ratio"], "weight_decay": preset["weight_decay"],
            "max_grad_norm": TRAINER_DEFAULTS["max_grad_norm"], "max_length": preset["max_length"],
            "truncation": TRAINER_DEFAULTS["truncation"], "dtype": TRAINER_DEFAULTS["dtype"],
            "gradient_checkpointing": True, "loss_normalization": "micro_batch", "template": "paper",
            "model_key": model_key, "adam_beta1": TRAINER_DEFAULTS["adam_betas"][0],
            "adam_beta2": TRAINER_DEFAULTS["adam_betas"][1]}


def _num(value) -> str:
    """``5e-05`` -> ``5e-5``; other values as ``str``."""
    if isinstance(value, float):
        text = repr(value)
        if "e-0" in text:
            text = text.replace("e-0", "e-")
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _argv(words: Sequence[str], options: dict) -> tuple[str, ...]:
    """``words`` then one ``--flag value`` per option (``--flag`` / ``--no-flag`` for booleans)."""
    parts = list(words)
    for key, value in options.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            parts += [flag, ",".join(map(str, value))]
        else:
            parts += [flag, _num(value)]
    return tuple(parts)


def _data_step(regime: str, model_key: str, target: str, data_input: Optional[str], n: Optional[int]) -> PlanStep:
    """``deft data REGIME --protocol paper`` writing ``target``, validated as DataConfig."""
    from ..config import load_config
    from ..data.config import DataConfig

    options = {"protocol": "paper", "split": "train", "n": n, "out": target}
    words = ["deft", "data", regime]
    if regime != "figfont":
        source = data_input or REGIME_PRESETS[regime]["data_input"]
        options = {"protocol": "paper", "model_key": model_key, "n": n, "out": target}
        words.append(source)
        cfg = load_config(DataConfig, None, {"source": regime, "input": source, **options})
    else:
        cfg = load_config(DataConfig, None, {"source": regime, **options})
    return PlanStep("data", "train records", _argv(words, options), cfg)


def _eval_options(regime: str, family: str, model: str, target: Path, *, medical_eval: str,
                  math_eval_dir: Optional[str], overrides: dict) -> dict:
    preset = REGIME_PRESETS[regime]
    benchmarks = [b.format(medical_eval=medical_eval) for b in preset["benchmarks"]]
    options = {"model": model, "benchmark": benchmarks, "protocol": "paper", "prompt_family": family,
               **preset["eval"], "data_dir": math_eval_dir if regime == "math" else None, "out": str(target)}
    options.update(overrides)
    return {k: v for k, v in options.items() if v is not None}


def _check_eval(options: dict) -> None:
    """Validate ``deft eval`` options with its config class when this deft has one."""
    try:
        from ..eval.config import EvalConfig
    except ImportError:  # an eval without a config class takes keyword arguments; nothing to check here
        return
    from dataclasses import fields

    from ..config import load_config

    names = {f.name for f in fields(EvalConfig)}
    load_config(EvalConfig, None, {k: v for k, v in options.items() if k in names})


def _launcher(n_gpus: int) -> list[str]:
    if n_gpus == 1:
        return ["deft"]
    return ["accelerate", "launch", "--multi_gpu", "--num_processes", str(n_gpus), "-m", "deft.cli.main"]


def option_pairs(value) -> list:
    """A mapping of options as ``KEY=VALUE`` strings (booleans written ``true`` / ``false``), as
    :class:`PaperCellConfig`'s ``train`` / ``eval`` hold them; a list passes through."""
    if isinstance(value, dict):
        return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items()]
    return value


@dataclass
class PaperCellConfig:
    """Options of one paper cell (``deft compare --protocol paper``, a YAML file, or
    :func:`plan_paper_cell`)."""

    COMMAND = "compare"

    regime: Optional[str] = option(None, "the paper's regime: math (Table 1), medical (Table 2) or figfont (Table 3)",
                                   choices=(None, *REFERENCE_CELLS))
    model_key: Optional[str] = option(None, "the reference's model key, e.g. qwen-2.5-1.5b (see the regime's keys)")
    objectives: list[str] = option(list(DEFAULT_OBJECTIVES), "objectives as the reference names them (original, p, "
                                   "Cayley_Trans, DEFT, ...), EAFT, or deft specs; comma-separated", split="specs")
    out: str = option("runs/paper", "the cell's folder", aliases=("output_dir",))
    n_gpus: int = option(1, "processes sharing the global batch of 256 (1, 2, 4, 8, ...)", check="positive")
    model: Optional[str] = option(None, "model to fine-tune instead of the key's hub id (the prompts stay the key's)")
    train_data: Optional[str] = option(None, "existing training records (default: built by deft data --protocol paper)")
    data_input: Optional[str] = option(None, "math/medical source rows: file or hub id (default: the reference's)")
    data_n: Optional[int] = option(None, "keep only the first N training records (default: all)", check="positive")
    medical_eval: str = option("data/m1_eval_data_processed.json", "the m1 medical evaluation file")
    math_eval_dir: Optional[str] = option(None, "folder of <benchmark>/test.jsonl for the math benchmarks",
                                          aliases=("data_dir",))
    base: bool = option(True, "also evaluate the base model (the tables' Base row)")
    # an option value may hold a comma (an objective's parameters): these items are never split
    train: list[str] = option([], "deft train options for every run, KEY=VALUE (e.g. max_steps=4)", flag=False,
                              split="none")
    eval: list[str] = option([], "deft eval options for every model, KEY=VALUE (e.g. n=8)", flag=False,
                             split="none")
    dry_run: bool = option(False, "print the plan and stop")

    def validate(self) -> None:
        """Regime and model key are required; the objectives must parse."""
        if not self.regime or not self.model_key:
            raise ConfigError("--protocol paper needs --regime (math, medical or figfont) and --model-key")
        for name in self.objectives:
            reference_objective(name)
        parse_pairs(self.train)
        parse_pairs(self.eval)


def plan_paper_cell(cfg: Union[PaperCellConfig, str], model_key: Optional[str] = None,
                    objectives: Sequence[str] = DEFAULT_OBJECTIVES, *, out: str = "runs/paper", n_gpus: int = 1,
                    model: Optional[str] = None, train_data: Optional[str] = None, data_input: Optional[str] = None,
                    data_n: Optional[int] = None, medical_eval: str = "data/m1_eval_data_processed.json",
                    math_eval_dir: Optional[str] = None, evaluate_base: bool = True,
                    train_overrides: Optional[dict] = None, eval_overrides: Optional[dict] = None) -> PaperPlan:
    """The whole recipe of one cell of Tables 1-3 (see :func:`_plan`) from its
    :class:`PaperCellConfig`. For scripts, ``cfg`` may instead be the regime, followed by the model
    key, the objectives and the cell's options as keywords (``evaluate_base`` for ``base``,
    ``train_overrides`` / ``eval_overrides`` mappings for ``train`` / ``eval``)::

        plan_paper_cell("figfont", "qwen-2.5-1.5b", ["original", "DEFT"], out="runs/paper/ff")
    """
    if not isinstance(cfg, PaperCellConfig):
        cfg = PaperCellConfig(regime=cfg, model_key=model_key, objectives=list(objectives), out=out, n_gpus=n_gpus,
                              model=model, train_data=train_data, data_input=data_input, data_n=data_n,
                              medical_eval=medical_eval, math_eval_dir=math_eval_dir, base=evaluate_base,
                              train=option_pairs(dict(train_overrides or {})),
                              eval=option_pairs(dict(eval_overrides or {})))
    return _plan(cfg)


def _typed_train_options(overrides: dict) -> dict:
    """``deft train`` options given as ``KEY=VALUE`` text, by their field names and converted to the
    fields' types (``"4"`` -> 4), so that the plan computes with them; a bad value is a one-line error."""
    from ..config import alias_map, apply_overrides
    from ..train.config import TrainConfig

    typed = apply_overrides(TrainConfig(), overrides, where="train option")  # unknown names are refused here
    names = alias_map(TrainConfig)
    fields = [names.get(k) or names[k.replace("-", "_")] for k in overrides]
    return {name: getattr(typed, name) for name in fields}


def _plan(cfg: PaperCellConfig) -> PaperPlan:
    """The whole recipe of one cell of Tables 1-3: the training records (``deft data REGIME
    --protocol paper`` writing ``train_data``, default ``out/data/train.jsonl``; skipped when
    ``train_data`` names existing records), one ``deft train``
    per objective with the reference's presets (:func:`paper_train_options`; each a TrainConfig
    built and validated by :func:`deft.train.config.load_config`, under ``out/runs/<name>``) and one
    ``deft eval --protocol paper`` for the base model (``base``) and every run (``out/eval/<name>``).

    ``objectives`` are the reference's names (``original``, ``p``, ``Cayley_Trans``, ``DEFT``, ...),
    ``EAFT`` or deft specs. ``n_gpus`` processes share the global batch of 256. ``model`` replaces
    the key's hub id (e.g. a local copy; the prompt family stays the key's). ``data_input`` is the
    math/medical source (default: the reference's hub dataset), ``data_n`` keeps its first
    records (default: all; the whole FigFont train split), ``medical_eval`` the m1 evaluation
    file, ``math_eval_dir`` the folder of ``<benchmark>/test.jsonl``. ``train`` / ``eval``
    (``KEY=VALUE``) change single options (e.g. ``max_steps`` for a smoke test). Bad regime,
    model key, objective or option: ``ValueError`` naming the valid ones."""
    from ..data.paper import require_family
    from ..train.config import load_config as load_train_config
    from .compare import run_name
    from .paper_tables import REGIME_TABLE

    regime, model_key, objectives, n_gpus = cfg.regime, cfg.model_key, cfg.objectives, cfg.n_gpus
    train_data, medical_eval, math_eval_dir = cfg.train_data, cfg.medical_eval, cfg.math_eval_dir
    train_overrides, eval_overrides = parse_pairs(cfg.train), parse_pairs(cfg.eval)
    _check_cell(regime, model_key)
    if not objectives:
        raise ValueError(f"--objectives: none given; e.g. {','.join(DEFAULT_OBJECTIVES)}")
    family = require_family(regime, model_key=model_key)
    specs = [(str(name).strip(), reference_objective(name)) for name in objectives]
    names = [run_name(spec) for _, spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"--objectives: {', '.join(n for n, _ in specs)} name the same objective twice")
    hub_model = PAPER_MODELS[model_key]
    model = cfg.model or hub_model
    root = Path(cfg.out)
    options = paper_train_options(regime, model_key, n_gpus=n_gpus)
    options.update(_typed_train_options(train_overrides))
    steps, notes = [], []
    if train_data and Path(train_data).is_file():
        records = train_data
    else:
        records = train_data or str(root / "data" / "train.jsonl")  # built there when absent
        steps.append(_data_step(regime, model_key, records, cfg.data_input, cfg.data_n))
    evals = []
    if cfg.base:
        evals.append(("base", model))
    for (given, spec), name in zip(specs, names):
        run_dir = root / "runs" / name
        train = {"model": model, "data": records, "objective": spec, "output_dir": str(run_dir), **options}
        cfg = load_train_config(None, train)  # every value converted and range-checked, objective validated
        argv = (*_launcher(n_gpus), "train", *(f"{k}={_num(v)}" for k, v in train.items()))
        steps.append(PlanStep("train", given, argv, cfg))
        evals.append((given, str(run_dir / "final")))
    for name, target_model in evals:
        target = root / "eval" / (name if name == "base" else run_name(reference_objective(name)))
        ev = _eval_options(regime, family, target_model, target, medical_eval=medical_eval,
                           math_eval_dir=math_eval_dir, overrides=dict(eval_overrides or {}))
        _check_eval(ev)
        steps.append(PlanStep("eval", name, _argv(["deft", "eval"], ev), ev))
    if model != hub_model:
        notes.append(f"model {model} stands in for {hub_model}: the paper's numbers are for the latter")
    if regime == "math" and not math_eval_dir:
        notes.append("math benchmarks are read from deft eval's default --data-dir; the reference's files are "
                     "evaluations/math/data/<name>/test.jsonl (its math_oai folder is math500)")
    if regime == "medical" and not Path(medical_eval).is_file():
        notes.append(f"{medical_eval}: not found; the m1 evaluation file is the reference's "
                     "evaluations/medical/data/m1_eval_data_processed.json")
    notes.append(f"the reference evaluates its last checkpoint ({REGIME_PRESETS[regime]['checkpoint']}); "
                 "deft evaluates final/, the same weights after one epoch")
    hyper = {"model": model, "prompt family": family, **{k: options[k] for k in options},
             "global batch": options["batch_size"] * options["grad_accum"] * n_gpus,
             "adam betas": (options["adam_beta1"], options["adam_beta2"]), "paper table": REGIME_TABLE[regime]}
    return PaperPlan(regime, model_key, model, family, n_gpus, str(root), tuple(specs), hyper,
                     _eval_options(regime, family, "<model>", root / "eval", medical_eval=medical_eval,
                                   math_eval_dir=math_eval_dir, overrides=dict(eval_overrides or {})),
                     tuple(steps), tuple(notes))


_HYPER_LABELS = (  # (key in plan.hyper, label) in print order
    ("model", "model"), ("prompt family", "prompt family"), ("lr", "lr"), ("global batch", "global batch"),
    ("batch_size", "micro-batch per GPU"), ("grad_accum", "grad accumulation"), ("epochs", "epochs"),
    ("lr_scheduler", "lr schedule"), ("warmup_ratio", "warmup ratio"), ("weight_decay", "weight decay"),
    ("max_length", "max length"), ("truncation", "truncation"), ("max_grad_norm", "max grad norm"),
    ("adam betas", "adam betas"), ("dtype", "dtype"), ("gradient_checkpointing", "gradient checkpointing"),
    ("loss_normalization", "loss normalization"), ("template", "template"), ("protocol", "protocol"),
)


def format_plan(plan: PaperPlan) -> str:
    """The plan as ``--dry-run`` prints it: the cell, every training hyper-parameter, the
    evaluation settings, the paper's published numbers for each compared row and the commands
    in the order they run."""
    from .paper_tables import BENCHMARKS, COLUMN_TITLES, MODEL_OF_KEY, paper_method, paper_row

    table = plan.hyper["paper table"]
    lines = [f"paper cell: regime {plan.regime}, model key {plan.model_key} ({PAPER_MODELS[plan.model_key]}; "
             f"Table {table}, rows {MODEL_OF_KEY[plan.model_key]}), {plan.n_gpus} GPU(s), out {plan.out}",
             "training (scripts/one_click/TEMPLATE.py of the reference):"]
    shown = set()
    for key, label in _HYPER_LABELS:
        if key in plan.hyper:
            shown.add(key)
            lines.append(f"  {label:<24}{_num(plan.hyper[key])}")
    for key, value in plan.hyper.items():  # overrides the table above does not name
        if key not in shown and key != "paper table":
            lines.append(f"  {key:<24}{_num(value)}")
    lines.append("evaluation:")
    for key, value in plan.evaluation.items():
        if key not in ("model", "out"):
            lines.append(f"  {key:<24}{','.join(value) if isinstance(value, list) else _num(value)}")
    lines.append("objectives: " + ", ".join(f"{given} -> {spec}" for given, spec in plan.objectives))
    lines.append(f"published (Table {table}, {MODEL_OF_KEY[plan.model_key]}):")
    rows = ([("Base", "base")] if any(s.name == "base" for s in plan.steps) else []) + list(plan.objectives)
    for given, spec in rows:
        values = paper_row(plan.regime, plan.model_key, given)
        method = paper_method(given)
        text = "  ".join(f"{COLUMN_TITLES[plan.regime][b]} {values[b]:.2f}" for b in BENCHMARKS[plan.regime]
                         if b in values)
        lines.append(f"  {given:<24}" + (f"[{method}] {text}" if values else "not in the paper"))
    lines.append("commands, in order:")
    lines += [f"  {i}. {step.command}" for i, step in enumerate(plan.steps, 1)]
    if plan.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in plan.notes]
    return "\n".join(lines)


def plan_to_dict(plan: PaperPlan) -> dict:
    """The plan as JSON-ready data (what a run records next to its results)."""
    from dataclasses import asdict, is_dataclass

    def settings(value):
        return asdict(value) if is_dataclass(value) else dict(value)

    return {"regime": plan.regime, "model_key": plan.model_key, "model": plan.model, "family": plan.family,
            "n_gpus": plan.n_gpus, "out": plan.out, "objectives": [list(o) for o in plan.objectives],
            "hyper": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.hyper.items()},
            "evaluation": plan.evaluation, "notes": list(plan.notes),
            "steps": [{"kind": s.kind, "name": s.name, "argv": list(s.argv), "settings": settings(s.settings)}
                      for s in plan.steps]}
