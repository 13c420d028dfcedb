"""``deft eval``: generate k samples per problem, score them, print and save Average@k."""

from __future__ import annotations

import argparse

EPILOG = """benchmarks:
  math500 aime24 amc23     math, read from DATA_DIR/<name>/test.jsonl (the Qwen2.5-Math evaluation
  minerva_math             layout, each file with its own field names); scorer: math (boxed answer,
  olympiadbench gsm8k      symbolic equivalence)
  figfont                  reasoning-gym figlet_font puzzles (words of 2-5 letters), generated;
                           scorers: exact (primary) and jaro_winkler
  rg:TASK                  any reasoning-gym task, generated; scorer: the task's own
  FILE.jsonl               records from 'deft data' (prompt or messages, and answer); needs --scorer

Average@k is the mean over problems of the mean score over the k samples; with k=1 and temperature
0 it is greedy accuracy. Pass@k and Maj@k are reported when k > 1. Values are printed in percent
and saved as fractions.

outputs in --out DIR:
  results.json        per benchmark: n, k, average_at_k, stderr, pass_at_k, maj_at_k, per-scorer
                      averages (figfont: exact, jaro_winkler), truncated; an "average" row; _config
  generations.jsonl   every sample: benchmark, id, prompt, reference, sample, text, answer, scores

examples:
  deft eval --benchmark figfont --limit 64
  deft eval --model runs/deft/final --benchmark math500,aime24 --data-dir data/eval --k 16 --out eval/deft
  deft eval --model Qwen/Qwen2.5-Math-1.5B --benchmark math500 --data-dir data/eval --backend vllm --k 16
  deft eval --benchmark data/figfont_test.jsonl --scorer exact,jaro_winkler --out eval/figfont

Generated text is scored as text only; model output is never executed."""


def _benchmarks(values) -> list[str]:
    out = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_parser(subparsers) -> None:
    from ..eval.generate import DTYPES
    from ..eval.runner import BACKENDS

    p = subparsers.add_parser(
        "eval", help="evaluate a model: k samples per problem, Average@k / Pass@k / Maj@k",
        description="Generate k samples per problem with the chat template used in training, score every "
                    "sample (math equivalence, exact match, Jaro-Winkler, reasoning-gym verifiers) and report "
                    "Average@k with its standard error, Pass@k and Maj@k per benchmark, with an average row.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="smollm2-135m", metavar="M",
                   help="model to evaluate: the embedded 'smollm2-135m' (default), a .gguf file, a local HF "
                        "directory (e.g. the final/ of 'deft train') or an HF hub id")
    p.add_argument("--benchmark", "-b", action="append", required=True, metavar="NAME",
                   help="benchmark(s): math500, aime24, amc23, minerva_math, olympiadbench, gsm8k, figfont, "
                        "rg:TASK or a record file; comma-separated and/or repeated")
    p.add_argument("--data-dir", metavar="DIR",
                   help="directory holding <name>/test.jsonl for the math benchmarks")
    p.add_argument("--scorer", metavar="NAME",
                   help="scorer(s) for record files: math, mcq, exact, jaro_winkler or rg:TASK; several "
                        "comma-separated, the first is primary (e.g. exact,jaro_winkler)")
    p.add_argument("--k", type=_positive_int, default=1, metavar="K",
                   help="samples per problem (default 1; the paper's Average@16 uses --k 16)")
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="sampling temperature; 0 is greedy decoding (default: 0 when k=1, 1.0 when k>1)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P",
                   help="nucleus sampling threshold in (0, 1] (default 1.0: no truncation)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=None, metavar="N",
                   help="generation budget per sample (default per benchmark: 2048 for math and mcq, 32 for "
                        "figfont and exact/jaro_winkler, 1024 for reasoning-gym tasks; lower it on CPU)")
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                   help="sequences generated together by the hf backend (default 64 on a GPU, 8 on CPU)")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="evaluate only the first N problems of each benchmark")
    p.add_argument("--size", type=_positive_int, default=None, metavar="N",
                   help="number of problems to generate for figfont (default 256) and rg:TASK (default 100)")
    p.add_argument("--problem-seed", type=int, default=None, metavar="S",
                   help="seed of the generated figfont/rg problems (default: the fixed evaluation seed, far "
                        "from the seeds used for training data)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="sampling seed; the same seed, inputs and batch size give the same samples (default 0)")
    p.add_argument("--backend", choices=BACKENDS, default="hf",
                   help="generation backend: hf (transformers generate with KV cache, CPU or GPU; default) or "
                        "vllm (when installed)")
    p.add_argument("--template", choices=("auto", "chat", "plain", "qa"), default="auto",
                   help="prompt template as in training: the tokenizer's chat template (auto when it has one) "
                        "or a plain text template")
    p.add_argument("--system", metavar="TEXT", default=None,
                   help="system prompt for problems without one (default: figfont's training system prompt "
                        "for figfont, none otherwise; '' for none)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="model weights dtype (default auto: bfloat16 on a GPU, float32 on CPU)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model repository's own code (only for models you trust)")
    p.add_argument("--out", "-o", metavar="DIR",
                   help="write DIR/results.json and DIR/generations.jsonl (default: print the table only)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..eval.benchmarks import DEFAULT_EVAL_SEED
    from ..eval.runner import evaluate

    benchmarks = _benchmarks(args.benchmark)
    if not benchmarks:
        raise ValueError("--benchmark is empty")
    evaluate(
        args.model, benchmarks, data_dir=args.data_dir, scorer=args.scorer, k=args.k,
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, limit=args.limit, size=args.size, seed=args.seed, out_dir=args.out,
        backend=args.backend, template=args.template, system=args.system, dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        problem_seed=DEFAULT_EVAL_SEED if args.problem_seed is None else args.problem_seed,
        progress=not args.no_progress,
    )
    return 0
