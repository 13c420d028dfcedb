"""Compare objectives: one training run per objective (and seed) on the same model, data and
hyper-parameters, each evaluated (and the base model), summarised as a paper-style table.

Layout of an experiment folder::

    OUT/compare.json                 the resolved settings of the comparison
    OUT/runs/<objective>[/seed<s>]/  deft train output (metrics.jsonl, final/, inputs.json)
    OUT/eval/<base|objective>[/seed<s>]/  deft eval output (results.json, heldout.json, inputs.json)
    OUT/ood.jsonl                    the base model's greedy answers to general prompts (forgetting set)
    OUT/results.md, results.csv      methods as rows (base first), metrics as columns, seeds, intervals;
                                     results.md adds per-problem paired bootstrap differences to nll
    OUT/table.json                   the results behind the table ('deft plot --results OUT' puts it in a report)
    OUT/training_curves.png          token statistics of every run over training (Figure 5 view)
    OUT/gate_curves.png              gate s(p) and signal W(p) of the compared objectives

**Results that know their inputs.** Each run and evaluation folder holds ``inputs.json``: the
sha256 (:func:`deft.config.settings_hash`) of its resolved settings and of the bytes of its input
files (training data, held-out data, benchmark folder), and for an evaluation the hash of the run
it evaluates. A finished folder whose hash is unchanged is reused; one whose hash changed is
deleted and redone, and the log says which setting changed. An unfinished run whose settings are
unchanged resumes from its newest checkpoint (``OUT/hashes.json`` remembers what each folder was
started for).

``--resume`` continues a comparison as ``deft train --resume`` continues a run: the same reuse and
continuation, but a job whose settings or inputs changed is refused instead of redone, so nothing
finished is ever deleted.

**Validation before work.** Every run's training config (ranges, objective, teacher/reference
models), the data files and the benchmarks are checked before the first model loads.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..config import ConfigError, option
from . import steps
from .jobs import Job, Ledger, reason, record_inputs, stored

__all__ = ["CompareConfig", "run_name", "parse_seeds", "plan_runs", "compare"]


def _check_seeds(seeds: list) -> Optional[str]:
    return "must be distinct integers" if len(set(seeds)) != len(seeds) else None


@dataclass
class CompareConfig:
    """Every option of ``deft compare`` (training options come as ``key=value`` pairs)."""

    COMMAND = "compare"
    model: str = option("smollm2-135m", "model to fine-tune: the embedded 'smollm2-135m', a local HF folder, a .gguf "
                        "file or an HF hub id")
    data: Optional[str] = option(None, "training records (from 'deft data')", aliases=("train", "train_data"))
    objectives: list[str] = option(["nll", "p", "cayley", "deft", "eaft"], "comma-separated objective specs",
                                   split="specs")
    benchmark: list[str] = option([], "benchmark(s) as in 'deft eval', comma-separated (e.g. figfont, "
                                  "rg:word_sorting, math500)", aliases=("benchmarks",))
    n: Optional[int] = option(None, "problems generated for figfont / rg:<task> benchmarks",
                              aliases=("eval_size", "size"), check="positive")
    scorer: Optional[str] = option(None, "scorer of record-file benchmarks (see 'deft eval --help')")
    limit: Optional[int] = option(None, "evaluate at most this many problems per benchmark", check="positive")
    k: int = option(1, "samples per problem (Average@k)", check="positive")
    temperature: Optional[float] = option(None, "sampling temperature (default: 0 for k=1, else 1)",
                                          check="non_negative")
    max_new_tokens: Optional[int] = option(None, "generation budget (default: per benchmark)", check="positive")
    eval_batch_size: Optional[int] = option(None, "sequences generated together in each evaluation (default as in "
                                            "'deft eval': 64 on a GPU, 8 on CPU; greedy answers can differ with it "
                                            "in the last bits, so it is part of the evaluation's settings)",
                                            check="positive")
    data_dir: Optional[str] = option(None, "folder of <benchmark>/test.jsonl files for math benchmarks")
    heldout: Optional[str] = option(None, "held-out records of the training distribution: NLL, mean target "
                                    "probability (teacher-forced, response tokens) and the Figure 1 shares, on "
                                    "content tokens first (content_*), then end-of-turn tokens (end_mean_p) and all "
                                    "tokens (heldout_nll, heldout_mean_p)")
    forgetting: bool = option(True, "measure drift_kl and retained_nll on the base model's greedy answers to "
                              "shipped general prompts (generated once, cached in OUT/ood.jsonl)")
    seeds: list[int] = option([], "comma-separated training seeds, e.g. 0,1,2: every cell is the mean over "
                                  "seeds with its 95-percent interval", check=_check_seeds)
    base: bool = option(True, "evaluate the base model (its row comes first)")
    out: str = option("runs/compare", "experiment folder", aliases=("output_dir",))
    grid: Optional[str] = option(None, "YAML grid: out, models, datasets (name: file), objectives, benchmarks, "
                                 "train (options), eval (options)")
    protocol: str = option("deft", "deft (our defaults) or paper (the reference's presets; with --regime and "
                           "--model-key)", choices=("deft", "paper"))
    regime: Optional[str] = option(None, "paper protocol: math, medical or figfont",
                                   choices=(None, "math", "medical", "figfont"))
    model_key: Optional[str] = option(None, "paper protocol: the reference's model key (e.g. qwen-2.5-1.5b)")
    dry_run: bool = option(False, "print the plan (runs, settings, hashes) and stop")
    resume: bool = option(False, "continue the comparison in --out, as 'deft train --resume' continues a run: "
                          "finished runs and evaluations are reused, unfinished ones continue where they stopped, and "
                          "nothing is redone: a job whose settings or inputs changed is refused (without --resume it "
                          "is redone)")

    def validate(self) -> "CompareConfig":
        if self.protocol == "paper":
            if not self.regime or not self.model_key:
                raise ConfigError("--protocol paper needs --regime (math, medical or figfont) and --model-key")
            return self
        if self.grid:
            return self
        if not self.data:
            raise ConfigError("pass --data FILE (training records) or --grid FILE")
        if not self.benchmark and not self.heldout and not self.forgetting:
            raise ConfigError("nothing to measure: pass --benchmark (e.g. figfont), --heldout FILE or --forgetting")
        return self


def run_name(spec: str) -> str:
    """A folder-safe name for an objective spec (``power:alpha=0.5`` -> ``power-alpha0.5``)."""
    text = spec.replace(">=", "-ge").replace("<=", "-le").replace("=", "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def parse_seeds(text) -> list[int]:
    """``"0,1,2"`` (or a list) -> ``[0, 1, 2]``: the ``seeds`` option as :class:`CompareConfig` loads it
    (distinct integers; ``ValueError`` otherwise)."""
    from ..config import apply_overrides

    try:
        return apply_overrides(CompareConfig(), {"seeds": text}, where="seeds").seeds
    except ConfigError as err:
        raise ValueError(str(err)) from None


# settings that say where and how verbosely a run writes, not what it computes
_NOT_HASHED = ("output_dir", "progress", "resume", "resume_from_checkpoint", "overwrite", "report_to", "num_workers",
               "logging_steps")


def _train_settings(cfg: CompareConfig, spec: str, seed, train_kw: dict, folder: Path) -> tuple[dict, dict]:
    """``(deft train options, resolved settings to hash)``; raises the run's config error first."""
    from ..config import config_to_dict
    from ..train import load_config

    options = dict(train_kw, model=cfg.model, data=cfg.data, objective=spec, output_dir=str(folder), progress=False)
    if seed is not None:
        options["seed"] = seed
    try:
        resolved = config_to_dict(load_config(None, options))
    except ValueError as err:
        raise ValueError(f"run '{spec}'{'' if seed is None else f' (seed {seed})'}: {err}") from None
    return options, {k: v for k, v in resolved.items() if k not in _NOT_HASHED}


def _eval_kw(cfg: CompareConfig) -> dict:
    kw = dict(k=cfg.k, progress=False, print_table=False)
    for key in ("temperature", "max_new_tokens", "limit", "data_dir", "scorer"):
        if getattr(cfg, key) is not None:
            kw[key] = getattr(cfg, key)
    if cfg.n is not None:
        kw["size"] = cfg.n
    if cfg.eval_batch_size is not None:
        kw["batch_size"] = cfg.eval_batch_size
    return kw


def plan_runs(cfg: CompareConfig, train_options: Optional[dict] = None) -> dict:
    """Every job of a comparison, validated, without loading a model: ``{"specs", "seeds",
    "train": [(spec, seed, Job, options)], "eval": {(method, seed): Job}, "heldout": {...}}``.
    Raises a one-line ``ValueError`` for a bad objective, run config, data file or benchmark."""
    from ..objectives import parse_objective

    out = Path(cfg.out)
    specs = []
    for s in cfg.objectives:
        try:
            specs.append(parse_objective(s).spec)
        except (KeyError, ValueError) as err:
            raise ValueError(f"--objectives: {str(err).strip(chr(39))}") from None
    names = [run_name(s) for s in specs]
    if not specs or len(set(names)) != len(names):
        raise ValueError(f"--objectives must be distinct objective specs, got {','.join(cfg.objectives)!r}")
    seeds = cfg.seeds or [None]
    benchmarks = list(cfg.benchmark)
    _check_inputs(cfg, benchmarks)
    eval_kw = _eval_kw(cfg)
    eval_inputs = {"data_dir": cfg.data_dir}
    heldout_inputs = {"heldout": cfg.heldout}
    measure = dict(heldout=cfg.heldout is not None, forgetting=cfg.forgetting)
    if cfg.heldout:  # content / end-of-turn metrics and per-record content sums (deft.eval.heldout): measurements
        measure["token_classes"] = True  # saved without them are redone
        measure["per_record"] = True
    plan = {"specs": specs, "seeds": seeds, "benchmarks": benchmarks, "train": [], "eval": {}, "heldout": {}}
    base_model = {"model": cfg.model}
    if cfg.base and benchmarks:
        plan["eval"][("Base", None)] = Job("eval", "base: evaluation", out / "eval" / "base",
                                           {**base_model, "benchmarks": benchmarks, "eval": eval_kw}, eval_inputs)
    if cfg.base and (cfg.heldout or cfg.forgetting):
        plan["heldout"][("Base", None)] = Job("heldout", "base: held-out metrics", out / "eval" / "base",
                                              {**base_model, **measure}, heldout_inputs)
    for spec, name in zip(specs, names):
        for seed in seeds:
            sub = "" if len(seeds) == 1 else f"seed{seed}"
            folder = out / "runs" / name / sub
            options, settings = _train_settings(cfg, spec, seed, dict(train_options or {}), folder)
            label = spec if len(seeds) == 1 else f"{spec} (seed {seed})"
            run = Job("train", f"{label}: training", folder, settings, {"data": cfg.data})
            plan["train"].append((spec, seed, run, options))
            key = (spec, seed if len(seeds) > 1 else None)
            model_id = {"run": run.hash}
            if benchmarks:
                plan["eval"][key] = Job("eval", f"{label}: evaluation", out / "eval" / name / sub,
                                        {**model_id, "benchmarks": benchmarks, "eval": eval_kw}, eval_inputs)
            if cfg.heldout or cfg.forgetting:
                plan["heldout"][key] = Job("heldout", f"{label}: held-out metrics", out / "eval" / name / sub,
                                           {**model_id, "base": cfg.model, **measure}, heldout_inputs)
    return plan


def _check_inputs(cfg: CompareConfig, benchmarks: list) -> None:
    """Data files and benchmarks, read before any model loads."""
    from ..data import RecordError, iter_records

    for flag, path in (("--data", cfg.data), ("--heldout", cfg.heldout)):
        if path is None:
            continue
        good = 0
        for where, rec in iter_records(path):
            if isinstance(rec, RecordError):
                raise ValueError(f"{flag}: {rec}")
            good += 1
        if not good:
            raise ValueError(f"{flag} {path}: no records")
    if benchmarks:
        from ..eval.runner import load_problems

        kw = {k: v for k, v in _eval_kw(cfg).items() if k in ("data_dir", "scorer", "limit", "size")}
        load_problems(benchmarks, **kw)


def _train_in_subprocess(options: dict, run_dir: Path) -> None:
    """Run ``deft train`` as a step (:mod:`.steps`: a fresh process). Its output goes to
    ``run_dir/train.log``."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.parent / f"{run_dir.name}.train.log"
    args = [f"{key}={value}" for key, value in options.items() if value is not None]
    steps.run_deft(["deft", "train", *args], log_path, f"training {options.get('objective')}")
    shutil.copy(log_path, run_dir / "train.log")
    log_path.unlink()


def _train(job: Job, options: dict, out: Path, ledger: Ledger, log: Callable) -> None:
    record = stored(job.folder)
    finished = (job.folder / "final").is_dir() and (job.folder / "summary.json").exists()
    if finished and record.get("hash") == job.hash:
        log(f"{job.label} already done, inputs unchanged ({job.folder})")
        return
    resume = False
    if job.folder.exists():
        if not finished and ledger.get(job, out) == job.hash and (job.folder / "config.yaml").exists():
            resume = True
            log(f"{job.label}: resuming the unfinished run")
        else:
            log(f"{job.label}: redoing ({reason(job, record)})")
            shutil.rmtree(job.folder)
    ledger.started(job, out)
    if not resume:
        log(f"{job.label} ...")
    _train_in_subprocess(dict(options, resume=resume), job.folder)
    record_inputs(job)


def _unfinished_elsewhere(job: Job, out: Path, ledger: Ledger) -> bool:
    """An interrupted evaluation in ``job``'s folder that was started for other settings or inputs
    (or by a version that kept no ledger entry): its samples cannot be continued."""
    partial = any((job.folder / name).exists() for name in ("eval.json", "generations.jsonl", "results.partial.json"))
    return partial and ledger.get(job, out) != job.hash


def _evaluation(job: Job, model_path: str, benchmarks: list, eval_kw: dict, log: Callable, out: Path,
                ledger: Ledger) -> dict:
    from ..eval.runner import evaluate

    record = stored(job.folder)
    done = job.folder / "results.json"
    if done.exists() and record.get("hash") == job.hash:
        log(f"{job.label} already done, inputs unchanged ({done})")
        return json.loads(done.read_text())
    redo = job.folder.exists() and bool(done.exists() or record or _unfinished_elsewhere(job, out, ledger))
    if redo:  # the evaluation folder's own guard would refuse other settings: this is a deliberate redo
        why = reason(job, record) if record else "an unfinished evaluation with other settings"
        log(f"{job.label}: redoing ({why})")
        for name in ("results.json", "results.partial.json", "generations.jsonl", "inputs.json"):
            (job.folder / name).unlink(missing_ok=True)
    ledger.started(job, out)
    log(f"{job.label} on {', '.join(benchmarks)} ...")
    result = evaluate(model_path, benchmarks, out_dir=str(job.folder), **eval_kw,
                      **({"overwrite": True} if redo else {}))
    record_inputs(job)
    return result


def compare(cfg: CompareConfig, train_options: Optional[dict] = None, *, log: Callable = print) -> str:
    """Run (or reuse) every job of :func:`plan_runs` and write the tables and plots; returns the
    markdown table. ``train_options`` are ``deft train`` options (``max_steps``, ``lr``, ...)."""
    from ..analysis.tables import write_tables
    from ..io import atomic_write_json
    from .measure import add_paired_differences, heldout_results

    plan = plan_runs(cfg, train_options)  # every check happens here, before any model loads
    out = Path(cfg.out)
    if cfg.dry_run:
        return format_plan(plan, cfg)
    if cfg.resume:
        _check_resume(plan, out, log)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "compare.json", {"settings": {k: v for k, v in vars(cfg).items() if not k.startswith("_")},
                                            "train": dict(train_options or {}), "objectives": plan["specs"]})
    ledger = Ledger(out)
    eval_kw = _eval_kw(cfg)
    results: dict = {}
    if ("Base", None) in plan["eval"]:
        results["Base"] = {None: _evaluation(plan["eval"][("Base", None)], cfg.model, plan["benchmarks"], eval_kw, log,
                                           out, ledger)}
    runs = {}
    for spec, seed, job, options in plan["train"]:
        _train(job, options, out, ledger, log)
        key = (spec, seed if len(plan["seeds"]) > 1 else None)
        runs[key] = job.folder
        if key in plan["eval"]:
            res = _evaluation(plan["eval"][key], str(job.folder / "final"), plan["benchmarks"], eval_kw, log, out,
                             ledger)
            results.setdefault(spec, {})[key[1]] = res
    for key, metrics in heldout_results(cfg, plan["heldout"], runs, log=log).items():
        results.setdefault(key[0], {}).setdefault(key[1], {})["heldout"] = metrics
    ordered = {m: results[m] for m in (["Base"] if "Base" in results else []) + plan["specs"] if m in results}
    md = write_tables({m: (r[None] if list(r) == [None] else r) for m, r in ordered.items()}, out,
                      title=f"{cfg.model} on {Path(cfg.data).name}")
    md = add_paired_differences(out, md, {key: job.folder for key, job in plan["eval"].items()}, log=log)
    _plots(plan, runs, out, cfg.model)
    return md


def _status(job: Job, out: Path, ledger: Ledger) -> str:
    """``"new"``, ``"reuse"``, ``"continue"`` or ``"redo: why"`` for one job of a comparison in ``out``."""
    if job.kind == "heldout":
        record = stored(job.folder, "heldout.json")
        return "new" if not record else "reuse" if record.get("hash") == job.hash else "redo: " + reason(job, record)
    record = stored(job.folder)
    if record.get("hash") == job.hash:
        return "reuse"
    if job.kind == "train":
        if not job.folder.exists():
            return "new"
        finished = (job.folder / "final").is_dir() and (job.folder / "summary.json").exists()
        same = ledger.get(job, out) == job.hash and (job.folder / "config.yaml").exists()
        return "continue" if same and not finished else "redo: " + reason(job, record)
    if record or (job.folder / "results.json").exists():
        return "redo: " + reason(job, record)
    if _unfinished_elsewhere(job, out, ledger):
        return "redo: an unfinished evaluation with other settings"
    return "continue" if (job.folder / "generations.jsonl").exists() else "new"


def _check_resume(plan: dict, out: Path, log: Callable) -> None:
    """``--resume``: refuse (one line, before any model loads) when a job would be redone; say when
    there is nothing to resume."""
    ledger = Ledger(out)
    jobs = [j for _, _, j, _ in plan["train"]] + list(plan["eval"].values()) + list(plan["heldout"].values())
    status = {job.label: _status(job, out, ledger) for job in jobs}
    redo = [f"{label} ({s[len('redo: '):]})" for label, s in status.items() if s.startswith("redo")]
    if redo:
        raise ValueError(f"--resume continues the comparison in {out} and redoes nothing, but {len(redo)} job(s) "
                         f"changed: {'; '.join(redo[:3])}{'; ...' if len(redo) > 3 else ''}; drop --resume to "
                         "redo them, or choose another --out")
    if all(s == "new" for s in status.values()):
        log(f"nothing to resume in {out}: starting from scratch")
    else:
        counts = {k: sum(s == k for s in status.values()) for k in ("reuse", "continue", "new")}
        log(f"resuming {out}: {counts['reuse']} finished job(s) reused, {counts['continue']} to continue, "
            f"{counts['new']} to start")


def _plots(plan: dict, runs: dict, out: Path, model: str) -> None:
    from ..analysis.curves import all_curves, plot_curves
    from ..analysis.training_curves import plot_training_curves
    from ..objectives import parse_objective

    labelled = {spec if seed is None else f"{spec} s{seed}": folder for (spec, seed), folder in runs.items()}
    plot_training_curves(labelled, out / "training_curves.png", title=f"{model}: token statistics during training")
    curve_specs = [s for s in plan["specs"] if not (parse_objective(s).needs - {"batch"})]
    if curve_specs:
        plot_curves(all_curves(curve_specs), out / "gate_curves.png")


def format_plan(plan: dict, cfg: CompareConfig) -> str:
    """The jobs of a comparison, one line each, with the status their folder would get."""
    lines = [f"plan for {cfg.out}: {len(plan['train'])} training runs, {len(plan['eval'])} evaluations, "
             f"{len(plan['heldout'])} held-out measurements"]
    for job in [j for _, _, j, _ in plan["train"]] + list(plan["eval"].values()) + list(plan["heldout"].values()):
        name = "heldout.json" if job.kind == "heldout" else "inputs.json"
        record = stored(job.folder, name)
        status = "reuse" if record.get("hash") == job.hash else ("redo: " + reason(job, record)) if record else "new"
        lines.append(f"  {job.label:<40} {job.hash[:12]}  {status}")
    return "\n".join(lines)

