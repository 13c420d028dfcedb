"""``final/`` is checked complete before it is reported: the check itself on hand-made folders, and
a real run whose save writes an empty tensor (what ZeRO-3 wrote before the weights were gathered)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from deft.train import load_config, train
from deft.train.final import (IncompleteSaveError, check_adapter_complete, check_complete, expected_tensors,
                              save_gathered, saved_tensors)
from tiny_models import tiny_config
from train_step_helpers import write_records


def _weights(config, **changes):
    """A state dict of the model ``config`` describes, untied copies dropped, with ``changes``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight")
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def test_expected_tensors_come_from_the_config_and_know_tied_names():
    shapes, groups = expected_tensors(tiny_config("llama", tie_word_embeddings=True))
    assert shapes["model.embed_tokens.weight"] == (97, 32) and shapes["lm_head.weight"] == (97, 32)
    assert sorted(["lm_head.weight", "model.embed_tokens.weight"]) in [sorted(g) for g in groups]
    _, untied = expected_tensors(tiny_config("llama", tie_word_embeddings=False))
    assert untied == []


def test_a_complete_folder_passes_and_a_tied_copy_may_be_left_out(tmp_path):
    config = tiny_config("llama", tie_word_embeddings=True)
    save_file(_weights(config), tmp_path / "model.safetensors")
    check_complete(tmp_path, config)
    assert "lm_head.weight" not in saved_tensors(tmp_path)


@pytest.mark.parametrize("change,message", [
    ({"model.layers.0.mlp.up_proj.weight": torch.empty(0)}, "model.layers.0.mlp.up_proj.weight has shape [0]"),
    ({"model.norm.weight": None}, "model.norm.weight is missing"),
    ({"model.norm.weight": torch.ones(31)}, "expected [32]"),
])
def test_an_empty_missing_or_misshapen_tensor_is_refused(tmp_path, change, message):
    config = tiny_config("llama", tie_word_embeddings=False)
    save_file(_weights(config, **change), tmp_path / "model.safetensors")
    with pytest.raises(IncompleteSaveError, match="incomplete") as err:
        check_complete(tmp_path, config)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_untied_head_left_out_is_missing(tmp_path):
    config = tiny_config("llama", tie_word_embeddings=False)
    save_file(_weights(config, **{"lm_head.weight": None}), tmp_path / "model.safetensors")
    with pytest.raises(IncompleteSaveError, match="lm_head.weight is missing"):
        check_complete(tmp_path, config)


def test_a_sharded_checkpoint_is_read_through_its_index(tmp_path):
    config = tiny_config("llama", tie_word_embeddings=False)
    state = _weights(config)
    names = sorted(state)
    half = len(names) // 2
    save_file({k: state[k] for k in names[:half]}, tmp_path / "model-1.safetensors")
    save_file({k: state[k] for k in names[half:]}, tmp_path / "model-2.safetensors")
    index = {"weight_map": {k: ("model-1.safetensors" if i < half else "model-2.safetensors")
                            for i, k in enumerate(names)}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    check_complete(tmp_path, config)
    (tmp_path / "model-2.safetensors").unlink()
    with pytest.raises(IncompleteSaveError, match="model-2.safetensors was not written"):
        check_complete(tmp_path, config)


def test_save_gathered_keeps_other_files_and_writes_nothing_when_refused(tmp_path):
    from tiny_models import tiny_model

    model = tiny_model("llama", tie_word_embeddings=False)
    out = tmp_path / "out"
    (out / "checkpoint-1").mkdir(parents=True)
    save_gathered(model, out, {k: v.detach() for k, v in model.state_dict().items()})
    assert (out / "checkpoint-1").is_dir() and (out / "model.safetensors").exists()
    bad = tmp_path / "bad"
    state = {k: v.detach() for k, v in model.state_dict().items()}
    state["model.norm.weight"] = torch.empty(0)
    with pytest.raises(IncompleteSaveError):
        save_gathered(model, bad, state)
    assert list(bad.iterdir()) == []


def test_an_adapter_is_checked_against_the_trainable_parameters(tmp_path):
    from peft import LoraConfig, get_peft_model

    from tiny_models import tiny_model

    model = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path / "good")
    check_adapter_complete(tmp_path / "good", model)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    name = next(k for k in state if "lora_A" in k)
    state[name] = torch.empty(0)
    model.save_pretrained(tmp_path / "bad", state_dict=state)
    with pytest.raises(IncompleteSaveError, match="1 empty"):
        check_adapter_complete(tmp_path / "bad", model)


def test_a_run_whose_save_writes_an_empty_tensor_is_refused_and_its_checkpoint_stays(tiny_model_dir, tmp_path,
                                                                                     monkeypatch):
    """What ZeRO-3 did before the weights were gathered (a partitioned parameter saved as shape
    (0,)), forced here on one tensor: the run stops with one line naming the last good checkpoint,
    no ``final/`` and no ``summary.json`` appear."""
    from transformers import PreTrainedModel

    original = PreTrainedModel.save_pretrained

    def save_with_an_empty_tensor(self, folder, *args, **kwargs):
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        state["model.layers.1.mlp.down_proj.weight"] = torch.empty(0)
        kwargs["state_dict"] = state
        return original(self, folder, *args, **kwargs)

    data = write_records(tmp_path / "data.jsonl", 4)
    out = tmp_path / "run"
    cfg = load_config(None, dict(model=str(tiny_model_dir), data=str(data), output_dir=str(out), max_steps=2,
                                 save_steps=1, batch_size=2, progress=False, max_length=128))
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_with_an_empty_tensor)
    with pytest.raises(IncompleteSaveError) as err:
        train(cfg, log=lambda *_: None)
    message = str(err.value)
    assert "\n" not in message and "model.layers.1.mlp.down_proj.weight has shape [0]" in message
    assert f"the last good checkpoint is {out / 'checkpoint-2'}" in message
    assert not (out / "final").exists() and not (out / "final.tmp").exists()
    assert not (out / "summary.json").exists() and (out / "checkpoint-2").is_dir()


def test_a_non_finite_weight_is_never_saved(tiny_model_dir, tmp_path, monkeypatch):
    from deft.train import sharding
    from deft.train.trainer import NonFiniteError

    original = sharding.gather_state_dict

    def with_nan(model, everywhere=False):
        state = original(model, everywhere)
        state["model.norm.weight"] = torch.full_like(state["model.norm.weight"], float("nan"))
        return state

    monkeypatch.setattr(sharding, "gather_state_dict", with_nan)
    data = write_records(tmp_path / "data.jsonl", 2)
    out = tmp_path / "run"
    cfg = load_config(None, dict(model=str(tiny_model_dir), data=str(data), output_dir=str(out), max_steps=1,
                                 batch_size=2, progress=False, max_length=128))
    with pytest.raises(NonFiniteError, match="model.norm.weight"):
        train(cfg, log=lambda *_: None)
    assert not (out / "final").exists()
