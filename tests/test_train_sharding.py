"""Every engine deft advertises, run for real: 2 CPU processes through ``accelerate launch``.

For DDP, FSDP2 (sharded and full state dicts) and DeepSpeed ZeRO-2 / ZeRO-3 (``zero3_init_flag``
off and on), ``deft train`` and ``DeftSFTTrainer`` each take one SGD step that is anchored to the
gradient computed without any trainer code (:mod:`train_step_helpers`): the logged loss and
gradient norm equal it, and ``final/`` loaded back with ``AutoModelForCausalLM.from_pretrained``
is the starting model minus that gradient. The sharded engines also run LoRA on every linear layer
and the LM head, a rank with no loss token, frozen models (reference, teacher, psft old policy), a
SIGKILL after a sharded checkpoint followed by ``--resume`` (ZeRO-3 and FSDP2), and are compared
with one process.
Under DDP, ``deft train`` itself also takes the anchored step for each loss normalisation, and
3 steps of 2 processes match one process.

Every engine's jobs run in one 2-process launch (``distributed_helpers.run_engines``): each group of
jobs runs with the launch variables (``ACCELERATE_*``, ``FSDP_*``) ``accelerate launch`` gives that
engine's processes, a job outside DeepSpeed with HF's ZeRO-3 switch off, and each job records the
engine its trainer ran under, HF's ZeRO-3 switch and how the model was sharded, which the tests check.
The start-up of the processes (imports of torch, transformers, accelerate, DeepSpeed: most of a
launch's time here) is paid once instead of once per engine. A second launch, under the shipped
ZeRO-3 config, resumes the ZeRO-3 run killed at the end of the first, runs ``deft train`` itself,
and ends with an FSDP2 run killed, which a third launch resumes. ``make test`` distributes whole
files over its workers (``--dist loadfile``), so this file's launches run one after the other, and
every launch takes a free port.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from deft.train import load_config, train
from distributed_helpers import run_engines, tail
from tiny_models import save_tiny_model_dir
from train_step_helpers import check_moved, check_step, independent_step, tokenized_examples, write_records

pytestmark = pytest.mark.slow

SHARDED = ["fsdp2", "fsdp2_full", "zero3", "zero3_init"]
ENGINES = ["ddp", "zero2", *SHARDED]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "accelerate"
LORA = dict(lora_rank=4, lora_alpha=8, lora_dropout=0.0, target_modules="q_proj,v_proj,down_proj,lm_head")


def sgd(model_dir, data, out, **kw) -> dict:
    base = dict(model=str(model_dir), data=str(data), output_dir=str(out), max_length=128, progress=False, seed=3,
                max_steps=1, lr=1.0, lr_scheduler="constant", warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=0.0,
                optim="sgd", batch_size=1, grad_accum=2, objective="deft")
    base.update(kw)
    return base


def one_process(config: dict, out: Path, **changes) -> Path:
    """The same run in this process, with the same global batch (the 2 processes' micro-batches)."""
    config = dict(config, output_dir=str(out), **changes)
    config["batch_size"] = 2 * config["batch_size"]
    train(load_config(None, config), log=lambda *_: None)
    return out


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def final_weights(final: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return {k: v.detach() for k, v in AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
            .named_parameters()}


def assert_same_run(a: Path, b: Path) -> None:
    """Same per-step losses and gradient norms, same final weights (fp32 summation order apart)."""
    ra, rb = metrics(a), metrics(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        assert x["tokens"] == y["tokens"]
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    wa, wb = final_weights(a / "final"), final_weights(b / "final")
    assert set(wa) == set(wb)
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model_dir, figfont_records):
    """Data, a teacher with the same vocabulary, and an untied-head model for every engine's jobs."""
    root = tmp_path_factory.mktemp("sharding")
    data = write_records(root / "data.jsonl", 4)
    teacher = save_tiny_model_dir(root / "teacher", seed=7)
    untied = save_tiny_model_dir(root / "untied", seed=5, tie_word_embeddings=False)
    return {"root": root, "data": data, "teacher": teacher, "untied": untied, "model": tiny_model_dir,
            "rows_one_empty": _rows_one_without_loss_tokens(tiny_model_dir, root / "rows.jsonl"),
            "data8": write_records(root / "data8.jsonl", 8), "figfont": figfont_records}


def _rows_one_without_loss_tokens(model_dir, path: Path) -> Path:
    """Two tokenized rows (labels given), the second without any loss token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for text, keep in (("Question: say something. Answer: a dog house", 1), ("Question: nothing to learn here", 0)):
        ids = tok(text)["input_ids"]
        rows.append({"input_ids": ids, "labels": [-100] * 4 + [t if keep else -100 for t in ids[4:]]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _frozen_configs(folder: Path, s: dict) -> dict:
    """deft train runs with a reference (sft_kl), a teacher (kd_hybrid) and a psft old policy."""
    return {
        "sft_kl": sgd(s["model"], s["data"], folder / "sft_kl", objective="sft_kl:lam=0.5"),
        "kd_hybrid": sgd(s["model"], s["data"], folder / "kd_hybrid", objective="kd_hybrid",
                         teacher_model=str(s["teacher"])),
        "psft": sgd(s["model"], s["data"], folder / "psft", objective="psft", max_steps=2, old_policy_refresh=1),
    }


def _sft_lora_job(s: dict, out: Path, per_device: int = 1) -> dict:
    """DeftSFTTrainer with a LoRA adapter on q, v and down (TRL itself refuses one on the LM head)."""
    return {"kind": "sft", "model": str(s["untied"]), "data": str(s["data"]), "out": str(out),
            "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]},
            "args": {"per_device_train_batch_size": per_device}}


def _sigkill_config(folder: Path, s: dict, name: str) -> dict:
    """4 steps with a checkpoint every 2, into ``folder/name``."""
    return sgd(s["model"], s["data8"], folder / name, max_steps=4, save_steps=2, grad_accum=1, lr=0.05)


def _sgd_flags(s: dict, out: Path, objective: str, normalization: str) -> list[str]:
    """``deft train`` flags of the SGD step of :func:`sgd`, with a loss normalisation."""
    return ["train", "--model", str(s["model"]), "--data", str(s["data"]), "--out", str(out), "--max-length", "128",
            "--seed", "3", "--no-progress", "--max-steps", "1", "--lr", "1", "--lr-scheduler", "constant",
            "--warmup-ratio", "0", "--weight-decay", "0", "--max-grad-norm", "0", "--optim", "sgd",
            "--objective", objective, "--batch-size", "1", "--grad-accum", "2", "--loss-normalization", normalization]


NORMALISATIONS = [("nll", "tokens"), ("deft", "tokens"), ("deft", "micro_batch")]


def _figfont_flags(s: dict, out: Path, batch_size: int) -> list[str]:
    """3 steps of ``deft train`` on FigFont records."""
    return ["train", "--model", str(s["model"]), "--data", str(s["figfont"]), "--max-length", "256", "--lr", "1e-3",
            "--max-steps", "3", "--seed", "5", "--no-progress", "--objective", "deft", "--batch-size",
            str(batch_size), "--output-dir", str(out)]


def _ddp_cli_jobs(folder: Path, s: dict) -> list[dict]:
    """``deft`` itself under DDP: the SGD step for each loss normalisation, and 3 FigFont steps."""
    jobs = [{"kind": "cli", "argv": _sgd_flags(s, folder / f"cli_{objective}_{normalization}", objective,
                                               normalization)} for objective, normalization in NORMALISATIONS]
    return jobs + [{"kind": "cli", "argv": _figfont_flags(s, folder / "figfont", batch_size=2)}]


def _bf16_jobs(folder: Path, s: dict) -> list[dict]:
    """Both trainers with bf16 mixed precision (the launch's setting for these jobs only)."""
    bf16 = {"ACCELERATE_MIXED_PRECISION": "bf16"}
    return [{"kind": "train", "config": sgd(s["model"], s["data"], folder / "bf16_train"), "env": bf16},
            {"kind": "sft", "model": str(s["model"]), "data": str(s["data"]), "out": str(folder / "bf16_sft"),
             "args": {"bf16": True}, "env": bf16}]




# DeftSFTTrainer objectives with a frozen model equal to the starting one: (extra job keys, share of NLL's step)
FROZEN_SFT = {"sft_kl:lam=0.5": ({}, 1.0), "kd_hybrid": ({"teacher": "model"}, 0.5)}


def _engine_jobs(engine: str, folder: Path, s: dict) -> list[dict]:
    jobs = [{"kind": "train", "config": sgd(s["model"], s["data"], folder / "train")},
            {"kind": "train", "config": sgd(s["untied"], s["data"], folder / "train_untied",
                                            gradient_checkpointing=engine in SHARDED)},
            {"kind": "sft", "model": str(s["model"]), "data": str(s["data"]), "out": str(folder / "sft")}]
    if engine == "ddp":
        jobs += _ddp_cli_jobs(folder, s)
    if engine in SHARDED:
        jobs.append({"kind": "train", "config": sgd(s["untied"], s["data"], folder / "lora", **LORA)})
        jobs.append(_sft_lora_job(s, folder / "sft_lora"))
    if engine == "zero3_init":  # frozen models beside a model that ZeRO-3 partitions as it loads
        jobs += [{"kind": "train", "config": c} for c in _frozen_configs(folder, s).values()]
        jobs += [{"kind": "sft", "model": str(s["model"]), "data": str(s["data"]), "objective": objective,
                  "out": str(folder / f"frozen_sft{i}"), **{k: str(s[v]) for k, v in extra.items()}}
                 for i, (objective, (extra, _)) in enumerate(FROZEN_SFT.items())]
    if engine == "zero3":  # one rank without loss tokens; TRL's preparation would drop that row, so it is skipped
        jobs.append({"kind": "sft", "model": str(s["model"]), "data": str(s["rows_one_empty"]),
                     "out": str(folder / "empty_rank"), "tokenized": True,
                     "args": {"gradient_accumulation_steps": 1, "dataset_kwargs": {"skip_prepare_dataset": True}}})
    if engine == "fsdp2":  # last: mixed precision bf16 for these jobs only
        jobs += _bf16_jobs(folder, s)
    if engine == KILLED_AT_THE_END:  # an uninterrupted run, then the same run killed (second_launch resumes it)
        jobs += _killed_at_the_end(folder, s)
    return jobs


# the launch's order: DDP first (its config is the launch's), ZeRO-3 last: its jobs end with a run that
# SIGKILLs every process once its checkpoint 2 is saved
LAUNCH_ORDER = ["ddp", "fsdp2", "fsdp2_full", "zero2", "zero3_init", "zero3"]
KILLED_AT_THE_END = LAUNCH_ORDER[-1]


@pytest.fixture(scope="module")
def every_engine(shared):
    """One 2-process launch running every engine's jobs (``run_engines``), each engine's into
    ``root/<engine>``; ``(root, done)``."""
    root = shared["root"] / "engines"
    groups = []
    for engine in LAUNCH_ORDER:
        (root / engine).mkdir(parents=True)
        groups.append((engine, _engine_jobs(engine, root / engine, shared)))
    done = run_engines(root, groups)
    # the processes died in the last job (KILLED_AT_THE_END), every earlier one finished
    killed = root / KILLED_AT_THE_END / "killed"
    assert done.returncode != 0 and (killed / "checkpoint-2").is_dir() and not (killed / "final").exists(), tail(done)
    return root, done


@pytest.fixture(params=ENGINES)
def engine_run(request, every_engine, shared):
    """``(engine, folder, s)``: the engine's jobs, run by the launch of every engine."""
    return request.param, every_engine[0] / request.param, shared


# what each engine's jobs must have run under (distributed_jobs.what_ran); one launch runs them all.
# hf_zero3: HF's ZeRO-3 switch (is_deepspeed_zero3_enabled) at the start of training, on for ZeRO-3 only
RAN_UNDER = {
    "ddp": {"distributed_type": "MULTI_CPU", "zero_stage": None, "zero3_init_flag": None, "sharding": "none",
            "fsdp_state_dict_type": None, "hf_zero3": False},
    "fsdp2": {"distributed_type": "FSDP", "zero_stage": None, "zero3_init_flag": None, "sharding": "fsdp",
              "fsdp_state_dict_type": "StateDictType.SHARDED_STATE_DICT", "hf_zero3": False},
    "fsdp2_full": {"distributed_type": "FSDP", "zero_stage": None, "zero3_init_flag": None, "sharding": "fsdp",
                   "fsdp_state_dict_type": "StateDictType.FULL_STATE_DICT", "hf_zero3": False},
    "zero2": {"distributed_type": "DEEPSPEED", "zero_stage": 2, "zero3_init_flag": False, "sharding": "none",
              "fsdp_state_dict_type": None, "hf_zero3": False},
    "zero3_init": {"distributed_type": "DEEPSPEED", "zero_stage": 3, "zero3_init_flag": True, "sharding": "zero3",
                   "fsdp_state_dict_type": None, "hf_zero3": True},
    "zero3": {"distributed_type": "DEEPSPEED", "zero_stage": 3, "zero3_init_flag": False, "sharding": "zero3",
              "fsdp_state_dict_type": None, "hf_zero3": True},
}


def test_every_job_ran_under_its_own_engine(engine_run):
    """The launch of every engine switched engine between groups of jobs: each trainer of an
    engine's jobs ran under that engine, with its parameters sharded as the engine shards them."""
    engine, folder, _ = engine_run
    records = {path.parent.name: json.loads(path.read_text()) for path in folder.glob("*/engine.json")}
    assert {"train", "train_untied", "sft"} <= set(records), sorted(records)
    for job, record in records.items():
        assert record == RAN_UNDER[engine], (engine, job, record)


def test_deft_train_step_is_minus_the_gradient(engine_run):
    engine, folder, s = engine_run
    for model, out in ((s["model"], folder / "train"), (s["untied"], folder / "train_untied")):
        before, grads, logged = independent_step(model, tokenized_examples(model, s["data"]), "deft")
        check_step(out, before, grads, logged)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["steps"] == 1 and Path(summary["final"]) == out / "final"


def test_deft_sft_trainer_step_is_minus_the_gradient(engine_run):
    """The rows TRL built (written by the job) give the independent gradient; the saved model and
    the logged loss and gradient norm must match it."""
    engine, folder, s = engine_run
    out = folder / "sft"
    examples = json.loads((out / "examples.json").read_text())
    before, grads, logged = independent_step(s["model"], examples, "deft")
    check_moved(out / "final", before, grads)
    first = json.loads((out / "log_history.json").read_text())[0]
    assert first["loss"] == pytest.approx(logged["loss"], rel=2e-5)
    assert first["grad_norm"] == pytest.approx(logged["grad_norm"], rel=2e-4)
    assert first["mean_p"] == pytest.approx(logged["mean_p"], rel=2e-5)
    assert json.loads((out / "compute_dtypes.json").read_text()) == ["torch.float32"]


@pytest.mark.parametrize("engine_run", ["ddp"], indirect=True)
@pytest.mark.parametrize("objective,normalization", NORMALISATIONS)
def test_deft_itself_takes_the_sgd_step_of_each_loss_normalisation(engine_run, objective, normalization):
    """``deft train`` under DDP, 2 processes x 2 micro-batches x 1 example of unequal token counts:
    the step's objective over all 4 examples (tokens: one global token count; micro_batch: the
    mean of the 4 per-micro-batch means, averaged over processes), anchored as in
    ``test_train_absolute.py``."""
    _, folder, s = engine_run
    examples = tokenized_examples(s["model"], s["data"])
    before, grads, logged = independent_step(s["model"], examples, objective, normalization=normalization)
    check_step(folder / f"cli_{objective}_{normalization}", before, grads, logged)
    assert math.isfinite(logged["loss"])


@pytest.mark.parametrize("engine_run", ["ddp"], indirect=True)
def test_two_processes_match_one_over_several_steps(engine_run, tmp_path):
    """The same global batch (2 processes x 2 vs 1 x 4): the same losses and gradient norms at
    every step of 3."""
    from deft.cli.main import main

    _, folder, s = engine_run
    one = tmp_path / "one"
    assert main(_figfont_flags(s, one, batch_size=4)) == 0
    a, b = metrics(one), metrics(folder / "figfont")
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b] and len(a) == 3
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-3)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """``reference_run(name, make)``: ``make(folder)``'s result, made once for the module (every
    sharded engine compares with the same one-process run)."""
    made = {}

    def get(name, make):
        if name not in made:
            made[name] = make(tmp_path_factory.mktemp(name))
        return made[name]

    return get


@pytest.mark.parametrize("engine_run", SHARDED, indirect=True)  # unsharded engines: the one-process path
def test_lora_on_every_linear_and_the_head_matches_one_process(engine_run, reference_run):
    engine, folder, s = engine_run
    out = folder / "lora"
    reference = reference_run("lora", lambda d: one_process(sgd(s["untied"], s["data"], out, **LORA), d / "one"))
    assert_same_run(reference, out)
    assert (out / "final" / "adapter" / "adapter_model.safetensors").exists()
    moved = final_weights(out / "final")["lm_head.weight"] - final_weights(s["untied"])["lm_head.weight"]
    assert float(moved.abs().max()) > 0  # the head's adapter was trained and merged


@pytest.mark.parametrize("engine_run", SHARDED, indirect=True)
def test_deft_sft_trainer_with_lora_saves_the_adapter_of_one_process(engine_run, reference_run):
    """The adapter DeftSFTTrainer saves (gathered, checked) equals the one-process run's, tensor by
    tensor, and the logged loss and gradient norm too."""
    from safetensors.torch import load_file

    from distributed_jobs import run_sft

    engine, folder, s = engine_run

    def make(d):
        run_sft(_sft_lora_job(s, d / "one", per_device=2))
        return d / "one"

    one = reference_run("sft_lora", make)
    logs = [json.loads((out / "log_history.json").read_text())[0] for out in (one, folder / "sft_lora")]
    assert logs[1]["loss"] == pytest.approx(logs[0]["loss"], rel=1e-5)
    assert logs[1]["grad_norm"] == pytest.approx(logs[0]["grad_norm"], rel=1e-4)
    a, b = (load_file(out / "final" / "adapter_model.safetensors") for out in (one, folder / "sft_lora"))
    assert set(a) == set(b) and any("down_proj" in k for k in a)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_a_finished_run_leaves_no_staging_or_temporary_folder(engine_run):
    engine, folder, s = engine_run
    for run in ("train", "train_untied"):
        assert not (folder / run / ".staging").exists()
        assert not list(folder.glob(f"{run}/final.*"))


@pytest.mark.parametrize("engine_run", ["zero3_init"], indirect=True)
def test_frozen_models_under_zero3_init_match_one_process(engine_run, tmp_path):
    """Reference (sft_kl), teacher (kd_hybrid) and psft old policy, with ZeRO-3 partitioning the
    trained model as it loads: the frozen models are whole on every process, and each run equals
    the one-process run."""
    _, folder, s = engine_run
    for name, config in _frozen_configs(folder, s).items():
        assert_same_run(one_process(config, tmp_path / f"{name}_one"), Path(config["output_dir"]))
    # DeftSFTTrainer, its model loaded partitioned (after the config switched ZeRO-3 on), the frozen
    # model equal to the starting one: at step 1 the KL term's gradient is 0, so the step is
    # (1 - lam) times the NLL gradient; a partitioned or wrong frozen model would move it
    for i, (extra, share) in enumerate(FROZEN_SFT.values()):
        out = folder / f"frozen_sft{i}"
        examples = json.loads((out / "examples.json").read_text())
        before, grads, _ = independent_step(s["model"], examples, "nll")
        check_moved(out / "final", before, {k: share * g for k, g in grads.items()})


@pytest.mark.parametrize("engine_run", ["fsdp2"], indirect=True)
def test_bf16_mixed_precision_under_fsdp2_trains_through_both_trainers(engine_run):
    """FSDP2's mixed-precision policy rebuilds the model's output from its items (the first step of
    DeftSFTTrainer used to fail on the lost statistics); both trainers now take the step, with the
    loss of the fp32 computation to bf16 precision and a complete final/. The model's linear layers
    really computed in bf16 (the loss of a tiny random model moves too little to show it), and the
    jobs of the launch before them in fp32."""
    _, folder, s = engine_run
    _, _, logged = independent_step(s["model"], tokenized_examples(s["model"], s["data"]), "deft")
    examples = json.loads((folder / "bf16_sft" / "examples.json").read_text())
    _, _, sft_logged = independent_step(s["model"], examples, "deft")
    first = json.loads((folder / "bf16_sft" / "log_history.json").read_text())[0]
    assert "mean_p" in first
    for got, fp32 in ((metrics(folder / "bf16_train")[0]["loss"], logged["loss"]), (first["loss"], sft_logged["loss"])):
        assert got == pytest.approx(fp32, rel=2e-2), (got, fp32)
    for name in ("bf16_train", "bf16_sft"):
        assert json.loads((folder / name / "compute_dtypes.json").read_text()) == ["torch.bfloat16"], name
        assert all(t.numel() > 0 and torch.isfinite(t).all() for t in final_weights(folder / name / "final").values())
    for name in ("train", "sft"):
        assert json.loads((folder / name / "compute_dtypes.json").read_text()) == ["torch.float32"], name


@pytest.mark.parametrize("engine_run", ["zero3"], indirect=True)
def test_a_rank_without_loss_tokens_finishes_under_zero3(engine_run):
    """One example per process, one of them with no loss token: the ranks make the same collective
    calls (the head's weight is read once per forward whatever the tokens), the run ends, and the
    step is the gradient of the other example alone."""
    _, folder, s = engine_run
    out = folder / "empty_rank"
    examples = json.loads((out / "examples.json").read_text())
    assert sorted(set(ex["labels"]) == {-100} for ex in examples) == [False, True]
    before, grads, _ = independent_step(s["model"], [ex for ex in examples if set(ex["labels"]) != {-100}], "deft")
    check_moved(out / "final", before, grads)


def _killed_at_the_end(folder: Path, s: dict) -> list[dict]:
    """An uninterrupted run, then the same run SIGKILLed (every process) once its checkpoint 2 is
    saved: the last jobs of a launch."""
    return [{"kind": "train", "config": _sigkill_config(folder, s, "whole")},
            {"kind": "train", "config": _sigkill_config(folder, s, "killed"), "kill_after_save": 2}]


def _resume(folder: Path, s: dict) -> dict:
    return {"kind": "train", "config": dict(_sigkill_config(folder, s, "killed"), resume=True)}


@pytest.fixture(scope="module")
def second_launch(every_engine, shared):
    """A new 2-process launch under the shipped ZeRO-3 config (``examples/accelerate/deepspeed_zero3.yaml``,
    made to run here): first ``--resume`` of the ZeRO-3 run killed at the end of the launch of every
    engine, with the ``zero3`` engine's launch variables; then ``deft train`` itself under the
    shipped config's own; then, under FSDP2, a run and the same run killed. ``(folder, done)``."""
    from distributed_helpers import cpu_variant

    root, folder = every_engine[0], every_engine[0] / "second_launch"
    (folder / "fsdp2").mkdir(parents=True)
    argv = ["train", "--model", str(shared["model"]), "--data", str(shared["data"]), "--out", str(folder / "shipped"),
            "--max-steps", "1", "--batch-size", "1", "--no-progress", "--max-length", "128", "--objective", "deft"]
    shipped = cpu_variant(EXAMPLES / "deepspeed_zero3.yaml", folder)
    done = run_engines(folder, [(shipped, []), (KILLED_AT_THE_END, [_resume(root / KILLED_AT_THE_END, shared)]),
                                (shipped, [{"kind": "cli", "argv": argv}]),
                                ("fsdp2", _killed_at_the_end(folder / "fsdp2", shared))])
    killed = folder / "fsdp2" / "killed"
    assert done.returncode != 0 and (killed / "checkpoint-2").is_dir() and not (killed / "final").exists(), tail(done)
    return folder, done


@pytest.fixture(scope="module")
def fsdp2_resumed(second_launch, shared):
    """A third launch (FSDP2): ``--resume`` of the FSDP2 run killed at the end of the second."""
    folder = second_launch[0] / "fsdp2"
    (folder / "resume_launch").mkdir()
    return folder, run_engines(folder / "resume_launch", [("fsdp2", [_resume(folder, shared)])])


@pytest.mark.parametrize("engine", [KILLED_AT_THE_END, "fsdp2"])
def test_sigkill_after_a_sharded_checkpoint_then_resume_equals_an_uninterrupted_run(engine, request):
    """A run killed (SIGKILL, every process) after its sharded checkpoint 2 (ZeRO-3: at the end of
    the launch of every engine, FSDP2's at the end of the second launch); ``--resume`` in a new
    launch (the second, the third) finishes it with the losses, gradient norms and final weights of
    the uninterrupted run."""
    if engine == KILLED_AT_THE_END:
        folder, done = request.getfixturevalue("every_engine")[0] / engine, request.getfixturevalue("second_launch")[1]
    else:
        folder, done = request.getfixturevalue("fsdp2_resumed")
        assert done.returncode == 0, tail(done)
    assert f"resuming from {folder / 'killed' / 'checkpoint-2'} (step 2)" in done.stdout, tail(done)
    assert (folder / "killed" / "final").exists(), tail(done)
    assert_same_run(folder / "whole", folder / "killed")
    for run in ("whole", "killed"):  # (the killed run's record: its resumed part's)
        assert json.loads((folder / run / "engine.json").read_text()) == RAN_UNDER[engine], run


def test_the_shipped_zero3_config_runs_deft_train_with_one_end_message_and_a_complete_model(second_launch):
    """``deft train`` itself under ``examples/accelerate/deepspeed_zero3.yaml`` (partitioned
    initialisation), made to run on 2 CPU processes: one ``done`` line, no ``--resume`` hint from
    the other process, and a complete ``final/``."""
    folder, done = second_launch
    assert done.stdout.count("done: 1 steps") == 1, tail(done)
    assert "--resume" not in done.stdout
    weights = final_weights(folder / "shipped" / "final")
    assert all(t.numel() > 0 for t in weights.values())


def test_every_shipped_accelerate_config_loads_and_names_its_engine():
    """accelerate reads each shipped file; single-node and multi-node files of one engine differ only
    in where the processes run."""
    from accelerate.commands.config.config_args import load_config_from_file

    expected = {"fsdp2": ("FSDP", None), "deepspeed_zero2": ("DEEPSPEED", 2), "deepspeed_zero3": ("DEEPSPEED", 3)}
    names = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert names == sorted([*expected, *(f"{n}_multinode" for n in expected)])
    for stem, (kind, stage) in expected.items():
        for name, machines in ((stem, 1), (f"{stem}_multinode", 2)):
            config = load_config_from_file(str(EXAMPLES / f"{name}.yaml"))
            assert config.distributed_type.value == kind and config.num_machines == machines, name
            assert config.num_processes == 8 * machines, name
            if stage:
                engine = json.loads((EXAMPLES.parent.parent / config.deepspeed_config["deepspeed_config_file"])
                                    .read_text())
                assert engine["zero_optimization"]["stage"] == stage, name
                assert config.deepspeed_config["zero3_init_flag"] is (stage == 3), name
            else:
                assert config.fsdp_config["fsdp_version"] == 2, name
        single, multi = (yaml_of(EXAMPLES / f"{n}.yaml") for n in (stem, f"{stem}_multinode"))
        where = ("num_machines", "num_processes", "main_process_port", "same_network")
        assert {k: v for k, v in single.items() if k not in where} == {k: v for k, v in multi.items() if k not in where}


def yaml_of(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_engine_configs_are_what_the_tests_claim(tmp_path):
    """The DeepSpeed configs partition every parameter and leave the 16-bit save gather off."""
    import yaml

    from distributed_helpers import write_config

    for engine in ("zero3", "zero3_init"):
        config = yaml.safe_load(write_config(engine, tmp_path).read_text())
        ds = json.loads(Path(config["deepspeed_config"]["deepspeed_config_file"]).read_text())["zero_optimization"]
        assert ds["stage"] == 3 and ds["stage3_param_persistence_threshold"] == 0
        assert ds["stage3_gather_16bit_weights_on_model_save"] is False
        assert config["deepspeed_config"]["zero3_init_flag"] is (engine == "zero3_init")


# --- the helpers in one process ------------------------------------------------------------------

def test_one_process_is_single_and_its_state_dict_is_the_model_itself():
    from accelerate import Accelerator

    from deft.train.sharding import engine_name, gather_state_dict, is_sharded, sharding_of
    from tiny_models import tiny_model

    accelerator = Accelerator(cpu=True)
    model = tiny_model("llama")
    assert engine_name(accelerator) == "single" and not is_sharded(model) and sharding_of(model) == "none"
    state = gather_state_dict(model, everywhere=True)
    assert set(state) == set(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(state[name], value)


def test_zero3_init_disabled_switches_hf_zero3_off_inside_and_back_on_after():
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    from deft.train.sharding import zero3_init_disabled

    with zero3_init_disabled():  # without DeepSpeed: nothing to do
        assert not is_deepspeed_zero3_enabled()
    config = HfDeepSpeedConfig({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}})
    try:
        assert is_deepspeed_zero3_enabled()
        with zero3_init_disabled():
            assert not is_deepspeed_zero3_enabled()
        assert is_deepspeed_zero3_enabled()
    finally:
        unset_hf_deepspeed_config()
    del config


def test_zero3_stays_on_only_as_long_as_hf_s_own_config_lives():
    """After the context, HF's own config object is active again, not a copy kept alive by deft: once
    its owner (a run's TrainingArguments) is gone, a model loaded later in the process is whole."""
    import gc

    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    from deft.train.sharding import zero3_init_disabled

    config = HfDeepSpeedConfig({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}})
    try:
        with zero3_init_disabled():
            pass
        assert is_deepspeed_zero3_enabled()
        del config
        gc.collect()
        assert not is_deepspeed_zero3_enabled()
    finally:
        unset_hf_deepspeed_config()


def test_copy_weights_into_refuses_a_state_that_does_not_fit():
    from deft.train.sharding import copy_weights_into
    from tiny_models import tiny_model

    source, target = tiny_model("llama", seed=1), tiny_model("llama", seed=2)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    copy_weights_into(target, state)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    state.pop("model.norm.weight")
    with pytest.raises(ValueError, match="missing"):
        copy_weights_into(target, state)


def test_an_fsdp_launch_that_accelerate_runs_as_ddp_is_named(monkeypatch):
    from accelerate import Accelerator

    from deft.train.sharding import fallback_notice

    accelerator = Accelerator(cpu=True)
    assert fallback_notice(accelerator) is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    notice = fallback_notice(accelerator)
    assert "asks for FSDP" in notice and "SINGLE" in notice and "\n" not in notice
