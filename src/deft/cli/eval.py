"""``deft eval``: generate k samples per problem, score them, print and save Average@k.

Parses :class:`deft.eval.config.EvalConfig` (flags, ``--config`` YAML) and calls
:func:`deft.eval.evaluate`; nothing else.
"""

from __future__ import annotations

import argparse
import textwrap

_RECORDS = "records from 'deft data' (prompt or messages, and answer); needs --scorer"

_REST = """--protocol paper reproduces the paper's reference evaluation: its literal prompts (picked from the
model name, or --prompt-family), math k=16 at temperature 1 with the Qwen2.5-Math harness scorer,
reporting acc (first sample) and mean_acc (Average@16, the number of the paper's tables); figfont
items 40000.. of seed 42, 5 greedy tokens, score / normalized_score / jaro_winkler_similarity;
medical greedy up to 8000 tokens with the m1 answer matcher.

Average@k is the mean over problems of the mean score over the k samples; with k=1 and temperature
0 it is greedy accuracy. Pass@k and Maj@k are reported when k > 1. Values are printed in percent
and saved as fractions.

outputs in --out DIR (--resume, or re-running the same command, continues a killed evaluation: its
finished samples are reused and counted; other settings need --overwrite):
  results.json        per benchmark: n, k, average_at_k, stderr, pass_at_k, maj_at_k, per-scorer
                      averages, truncated; an "average" row; _config with the settings_hash
  generations.jsonl   every sample: benchmark, id, sample, prompt, reference, text, answer, scores
  eval.json           the resolved settings and their hash
  results.json "heldout" (with --heldout / --forgetting): content tokens first (the response text):
                      content_nll, content_mean_p, content_tokens; end-of-turn / template tokens:
                      end_nll, end_mean_p, end_tokens; all response tokens: heldout_nll,
                      heldout_mean_p, heldout_tokens; with --base-model the Figure 1 shares
                      content_learned / content_forgotten and learned / forgotten (_high, _low: base
                      p >= 0.5 or < 0.5); with --forgetting drift_kl, retained_nll and ood_answers

examples:
  deft eval --benchmark figfont --limit 64
  deft eval --model runs/deft/final --benchmark math500,aime24 --data-dir data/eval --k 16 --out eval/deft
  deft eval --model Qwen/Qwen2.5-Math-1.5B --benchmark math500 --data-dir data/eval --protocol paper
  deft eval --model runs/med/final --benchmark medical:data/m1_eval.json --out eval/med
  deft eval --benchmark data/figfont_test.jsonl --scorer exact,jaro_winkler --out eval/figfont
  deft eval --model runs/deft/final --heldout data/heldout.jsonl --base-model smollm2-135m --forgetting
  deft eval --model runs/deft/final --benchmark figfont --out eval/figfont --resume   # after a kill

Generated text is scored as text only; model output is never executed."""


def _section(title: str, entries: dict[str, str]) -> str:
    """An epilog section: ``title:`` and one entry per line, the help wrapped beside the name."""
    lines = [f"{title}:"]
    for name, text in entries.items():
        body = textwrap.wrap(text, 96 - 27) or [""]
        lines.append(f"  {name:<24} {body[0]}" if len(name) <= 24 else f"  {name}\n{'':27}{body[0]}")
        lines.extend(f"{'':27}{more}" for more in body[1:])
    return "\n".join(lines)


def epilog() -> str:
    """The text after the options of ``deft eval --help``; the benchmark and scorer lists come from
    their registries (:func:`deft.eval.register_benchmark`, :func:`deft.eval.register_scorer`)."""
    from ..eval.benchmarks import BENCHMARK_REGISTRY
    from ..eval.scorers import list_scorers

    benchmarks = {f"{b.name}:{b.argument.upper()}" if b.argument else b.name: b.help
                  for b in BENCHMARK_REGISTRY.values()}
    return "\n".join([_section("benchmarks", {**benchmarks, "FILE.jsonl": _RECORDS}), "",
                      _section("scorers (--scorer, for record files)", list_scorers()), "", _REST])


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    from ..config import add_config_flags
    from ..eval.config import EvalConfig

    p = add_verb_parser(
        subparsers, "eval",
        description="Generate k samples per problem with the chat template used in training (or the paper's "
                    "literal prompts), score every sample (math equivalence, multiple choice, exact match, "
                    "Jaro-Winkler, reasoning-gym verifiers) and report Average@k with its standard error, Pass@k "
                    "and Maj@k per benchmark, with an average row.",
        epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--benchmark", "--benchmarks", "-b", dest="benchmark", action="append",
                   default=argparse.SUPPRESS,
                   metavar="NAME", help=EvalConfig.__dataclass_fields__["benchmark"].metadata["help"])
    add_config_flags(p, EvalConfig, skip=("benchmark",))
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import config_from_args
    from ..eval.config import EvalConfig
    from ..eval.runner import evaluate

    cfg = config_from_args(EvalConfig, args)
    evaluate(cfg)
    return 0
