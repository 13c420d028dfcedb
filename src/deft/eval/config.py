"""``EvalConfig``: every option of ``deft eval`` / :func:`deft.eval.evaluate`, written once.

The help texts become ``deft eval --help``; a YAML file (``--config``) or keyword arguments of
:func:`deft.eval.evaluate` use the same names. :func:`resolve_protocol` fills the options the user
left unset from the protocol's presets (``--protocol paper``: the reference's decoding per regime).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..config import ConfigError, explicit_fields, load_config, option, was_loaded
from .benchmarks import DEFAULT_EVAL_SEED

__all__ = ["BACKENDS", "DTYPES", "EvalConfig", "PAPER_PRESETS", "TEMPLATES", "make_config", "preset", "regime_of"]

_RENAMED = {"out_dir": "out", "size": "n"}  # keyword names of earlier versions

BACKENDS = ("hf", "vllm")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TEMPLATES = ("auto", "chat", "plain", "qa")


def _top_p(v: float) -> Optional[str]:
    return None if 0.0 < v <= 1.0 else "must lie in (0, 1]"


@dataclass
class EvalConfig:
    """Options of one evaluation (see each field's help)."""

    COMMAND = "eval"

    model: str = option("smollm2-135m", "model to evaluate: the embedded 'smollm2-135m', a .gguf file, a local HF "
                        "directory (e.g. the final/ of 'deft train') or an HF hub id")
    benchmark: list[str] = option([], "benchmark(s): a name listed under 'benchmarks' below (deft eval --help; "
                                  "deft.eval.list_benchmarks()) or a record file; comma-separated and/or repeated",
                                  aliases=("benchmarks",))
    map: list[str] = option([], "record columns for record files, KEY=COLUMN comma-separated (e.g. "
                            "prompt=question,answer=solution)")
    data_dir: Optional[str] = option(None, "directory holding <name>/test.jsonl for the math benchmarks")
    scorer: list[str] = option([], "scorer(s) for record files, listed under 'scorers' below (deft eval --help) "
                                   "and by deft.eval.list_scorers(); several comma-separated, the first is primary")
    protocol: str = option("deft", "deft (default: chat templates, deft's scorers) or paper (the reference code's "
                           "literal prompts, scorers and decoding: math k=16 at temperature 1 reporting acc and "
                           "mean_acc, figfont 5 greedy tokens, medical greedy up to 8000 tokens)",
                           choices=("deft", "paper"))
    prompt_family: Optional[str] = option(None, "model family of the paper's literal prompts (qwen, llama, deepseek; "
                                          "default: read from the model name)", choices=("qwen", "llama", "deepseek"))
    k: Optional[int] = option(None, "samples per problem (default 1; 16 for math under --protocol paper)",
                              check="positive")
    temperature: Optional[float] = option(None, "sampling temperature; 0 is greedy (default: 0 when k=1, 1.0 when "
                                          "k>1)", check="non_negative")
    top_p: float = option(1.0, "nucleus sampling threshold in (0, 1]", check=_top_p)
    max_new_tokens: Optional[int] = option(None, "generation budget per sample (default per benchmark: 2048 for math "
                                           "and mcq, 32 for figfont, 1024 for reasoning-gym; paper: 4096 math, 5 "
                                           "figfont, 8000 medical)", check="positive")
    batch_size: Optional[int] = option(None, "sequences generated together by the hf backend (default 64 on a GPU, "
                                       "8 on CPU)", check="positive")
    limit: Optional[int] = option(None, "evaluate only the first N problems of each benchmark (or medical source)",
                                  check="positive")
    n: Optional[int] = option(None, "number of problems generated for figfont and rg:TASK (default: 256 for "
                              "figfont, 5000 under --protocol paper; 100 for rg:TASK)", aliases=("size",),
                              check="positive")
    problem_seed: int = option(DEFAULT_EVAL_SEED, "seed of the generated figfont/rg problems (default: a seed far "
                               "from those of training data; the paper protocol uses items 40000+ of seed 42)")
    seed: int = option(0, "sampling seed; the same seed, inputs and batch size give the same samples")
    backend: str = option("hf", "generation backend: hf (transformers, CPU or GPU) or vllm (when installed)",
                          choices=BACKENDS)
    template: str = option("auto", "prompt template as in training: the tokenizer's chat template (auto when it has "
                           "one) or a plain text template", choices=TEMPLATES)
    system: str = option("auto", "system prompt for problems without one: auto (figfont's training system prompt "
                         "for figfont, none otherwise), none, or the prompt text")
    dtype: str = option("auto", "model weights dtype (auto: bfloat16 on a GPU, float32 on CPU)", choices=DTYPES)
    trust_remote_code: bool = option(False, "allow the model repository's own code (only for models you trust)")
    heldout: Optional[str] = option(None, "held-out records of the training distribution (a record file, as for "
                                    "'deft train'): adds NLL and mean target probability, teacher-forced over their "
                                    "response tokens (learning), on content tokens first (content_nll, "
                                    "content_mean_p), then end-of-turn / template tokens (end_nll, end_mean_p) and "
                                    "all tokens (heldout_nll, heldout_mean_p), under the key 'heldout' of results.json")
    base_model: Optional[str] = option(None, "the model before fine-tuning (same tokenizer): with --heldout adds the "
                                       "paper's Figure 1 shares (tokens learned / forgotten by confidence); needed "
                                       "by --forgetting")
    forgetting: bool = option(False, "forgetting metrics: drift_kl = KL(base || model) and retained_nll on the base "
                              "model's greedy answers to shipped general prompts (needs --base-model)")
    out: Optional[str] = option(None, "folder for results.json and generations.jsonl; a re-run with the same "
                                "settings resumes (default: print the table only)", aliases=("output_dir",))
    overwrite: bool = option(False, "replace an evaluation with other settings in --out")
    resume: bool = option(False, "continue the evaluation in --out, as 'deft train --resume' continues a run: its "
                          "finished samples are reused (and counted), only the missing ones generated; a finished "
                          "evaluation is printed again and left unchanged; other settings are refused (a re-run with "
                          "the same settings resumes too)")
    progress: bool = option(True, "show progress bars")

    def validate(self) -> "EvalConfig":
        """Cross-field checks (the benchmark list was split on commas when loaded)."""
        names = self.benchmark
        if self.resume and self.overwrite:
            raise ConfigError("'resume' and 'overwrite' contradict each other: pass one of them")
        if self.resume and not self.out:
            raise ConfigError("resume: continues the evaluation in --out; pass --out DIR (the folder of the run to "
                              "continue)")
        if self.forgetting and not self.base_model:
            raise ConfigError("forgetting: drift_kl and retained_nll compare with the model before fine-tuning; pass "
                              "--base-model MODEL (e.g. smollm2-135m)")
        if not names and not self.heldout and not self.forgetting:
            from .benchmarks import benchmark_names

            raise ConfigError(f"benchmark: none given; pass --benchmark NAME ({', '.join(benchmark_names())}) or a "
                              "record file, or --heldout FILE")
        if self.temperature is not None and 0 < self.temperature < 1e-5:
            raise ConfigError(f"temperature: {self.temperature} is too small for sampling; use 0 for greedy")
        return self


def regime_of(benchmark: str) -> str:
    """``math``, ``figfont``, ``medical`` or ``other`` for a benchmark name (its declared ``regime``,
    :func:`~deft.eval.benchmarks.register_benchmark`; a result row ``medical/<source>`` has its
    benchmark's; a record file is ``other``)."""
    from .benchmarks import BENCHMARK_REGISTRY, find_benchmark

    found = find_benchmark(benchmark)
    if found is not None:
        return found[0].regime
    base, sep, _ = benchmark.partition("/")
    decl = BENCHMARK_REGISTRY.get(base) if sep else None
    return decl.regime if decl is not None and decl.argument is not None else "other"


# --protocol paper: what the reference evaluation does per regime (decoding and scorers)
PAPER_PRESETS: dict[str, dict] = {
    "math": {"k": 16, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4096, "scorers": ("math_paper",)},
    "figfont": {"k": 1, "temperature": 0.0, "max_new_tokens": 5,
                "scorers": ("exact_paper", "exact_normalized_paper", "jaro_winkler_paper")},
    "medical": {"k": 1, "temperature": 0.0, "max_new_tokens": 8000, "scorers": ("mcq_paper",)},
}


def preset(cfg: EvalConfig, regime: str) -> dict:
    """Decoding of one regime: the user's options where set, else the protocol's presets, else
    deft's defaults (``k`` 1; temperature 0 for ``k == 1`` and 1.0 otherwise)."""
    given = explicit_fields(cfg) or {f.name for f in dataclasses.fields(cfg)
                                     if getattr(cfg, f.name) != EvalConfig.__dataclass_fields__[f.name].default}
    base = PAPER_PRESETS.get(regime, {}) if cfg.protocol == "paper" else {}

    def pick(name, default):
        value = getattr(cfg, name)
        if name not in given and name in base:
            return base[name]
        return default if value is None else value

    k = pick("k", 1)
    temperature = pick("temperature", None)
    if temperature is None:
        temperature = 0.0 if k == 1 else 1.0
    return {"k": k, "temperature": float(temperature), "top_p": float(pick("top_p", 1.0)),
            "max_new_tokens": pick("max_new_tokens", None)}


def make_config(cfg: "EvalConfig | str | None", benchmarks=None, options: dict | None = None) -> EvalConfig:
    """An :class:`EvalConfig` from either a config (returned validated) or a model spec, benchmark
    names and keyword options (field names; ``out_dir`` and ``size`` stand for ``out`` and ``n``),
    converted and checked as ``deft eval`` checks its flags."""
    options = dict(options or {})
    if isinstance(cfg, EvalConfig):
        if benchmarks or options:
            raise TypeError("pass options either in the EvalConfig or as keywords, not both")
        if was_loaded(cfg):
            return cfg  # load_config converted, checked and validated it already
        # built directly: load the values that differ from the defaults, converted and checked like flags
        defaults = EvalConfig()
        options = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                   if getattr(cfg, f.name) != getattr(defaults, f.name)}
        return load_config(EvalConfig, None, options, where="EvalConfig")
    overrides = {_RENAMED.get(k, k): v for k, v in options.items() if v is not None}
    if cfg is not None:
        overrides["model"] = cfg
    if benchmarks is not None:
        overrides["benchmark"] = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    return load_config(EvalConfig, None, overrides, where="evaluate()")
