"""Tests of deft.train.config: training configuration: one dataclass on :mod:`deft.config`, every field
with its help text, range check and aliases (the HF ``TrainingArguments`` / TRL names are accepted
too), loadable from YAML and overridable by ``key=value`` pairs or ``--flag value`` options."""

from __future__ import annotations

from pathlib import Path

import pytest

from deft.config import ConfigError, load_config
from deft.train import load_config as load_train_config
from deft.train.config import TrainConfig


def _train(**kw):
    return load_config(TrainConfig, None, {"data": "x.jsonl", **kw})


def test_hf_and_trl_names_resolve_to_the_same_config():
    hf = _train(learning_rate="2e-5", num_train_epochs="2", per_device_train_batch_size="3",
                gradient_accumulation_steps="4", lr_scheduler_type="linear", model_name_or_path="m",
                output_dir="o")
    ours = _train(lr="2e-5", epochs="2", batch_size="3", grad_accum="4", lr_scheduler="linear", model="m", out="o")
    assert hf == ours
    assert hf.lr == 2e-5 and hf.batch_size == 3 and hf.grad_accum == 4 and hf.output_dir == "o"


@pytest.mark.parametrize("key,value,message", [
    ("lr", "inf", "'lr' must be a finite number"),
    ("weight_decay", "nan", "'weight_decay' must be a finite number"),
    ("max_steps", "0", "'max_steps' must be positive, or -1"),
    ("max_steps", "-5", "'max_steps' must be positive, or -1"),
    ("warmup_ratio", "5", "'warmup_ratio' must be a ratio in [0, 1)"),
    ("save_steps", "-1", "'save_steps' must be zero or positive"),
    ("save_total_limit", "0", "'save_total_limit' must be positive"),
    ("teacher_model", "t", "'teacher_model' is set but objective 'deft' uses no teacher"),
    ("reference_model", "r", "'reference_model' is set but objective 'deft' uses no reference"),
    ("objective", "kd", "needs --teacher-model"),
    ("objective", "nonsense", "unknown objective 'nonsense'"),
    ("report_to", "comet", "'report_to' must be none or a comma-separated list"),
    ("learnig_rate", "1", "did you mean 'learning_rate'?"),
])
def test_train_config_refuses_bad_values(key, value, message):
    with pytest.raises(ConfigError) as err:
        _train(**{key: value})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_protocol_paper_and_resume_from_checkpoint():
    paper = _train(protocol="paper")
    assert (paper.loss_normalization, paper.template) == ("micro_batch", "paper")
    assert _train(protocol="paper", loss_normalization="tokens").loss_normalization == "tokens"
    assert _train().loss_normalization == "tokens"
    resumed = _train(resume_from_checkpoint="runs/x/checkpoint-2")
    assert resumed.resume is True
    with pytest.raises(ConfigError, match="contradict"):
        _train(resume="true", overwrite="true")


ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads_and_starts_with_its_command():
    import yaml

    from deft.recipes.grid import validate_grid

    configs = sorted((ROOT / "examples").rglob("*.yaml"))
    kinds = {"train": 0, "grid": 0, "accelerate": 0, "paper": 0}
    for path in configs:
        first = path.read_text().splitlines()[0]
        if path.parent.name == "paper":  # loaded and planned by tests/test_recipes_paper.py
            assert first.startswith(f"# deft compare --protocol paper --config examples/paper/{path.name}")
            kinds["paper"] += 1
        elif first.startswith(f"# deft train --config examples/{path.name}"):
            load_train_config(str(path))
            kinds["train"] += 1
        elif first.startswith(f"# deft compare --grid examples/{path.name}"):
            validate_grid(yaml.safe_load(path.read_text()), str(path))
            kinds["grid"] += 1
        else:
            assert first.startswith("# accelerate launch --config_file examples/accelerate/" + path.name), path
            assert yaml.safe_load(path.read_text())["distributed_type"] in ("FSDP", "DEEPSPEED", "MULTI_GPU")
            kinds["accelerate"] += 1
    assert all(kinds.values()), kinds


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("objective: power:alpha=0.3\nlr: 1e-4\npacking: true\n")
    cfg = load_train_config(str(path), {"lr": "2e-5"})
    assert cfg.objective == "power:alpha=0.3" and cfg.lr == 2e-5 and cfg.packing is True
    path.write_text("lr: [1\n")
    with pytest.raises(ValueError, match="c.yaml:"):
        load_train_config(str(path))
    paper = load_train_config(None, {"model": "meta-llama/Llama-3.1-8B", "preset": "paper"})
    assert paper.lr == 2e-5
    assert load_train_config(None, {"model": "Qwen/Qwen2.5-Math-1.5B", "preset": "paper"}).lr == 5e-5
