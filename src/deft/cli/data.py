"""``deft data``: write record files from the paper's regimes, reasoning-gym tasks, mixtures and
users' files; check files; print token-length statistics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SOURCES_HELP = """sources:
  figfont            FigFont puzzles (reasoning-gym figlet_font, words of 2-5 letters, space_letters=True)
  rg:TASK            any reasoning-gym task, e.g. rg:basic_arithmetic (parameters with --task-args)
  math FILE|ID       NuminaMath-CoT-style rows (problem, solution with a final \\boxed{})
  medical FILE|ID    m23K-style multiple-choice rows (question, options, answer_idx, reasoning)
  mix                several sources in proportions: --part SPEC=PROPORTION (repeat)
  jsonl FILE|ID      validate and normalise your own records (also: a file path as SOURCE)
  check FILE         validate a record file only (no output)
  stats FILE         token-length statistics with --model's tokenizer

FILE is a .jsonl, .json or .parquet file or a datasets save_to_disk directory; ID a Hugging Face
dataset id (needs network). Records are {"messages": [...]} or {"prompt": ..., "response": ...}
with optional system, answer, task, id, weight, token_weights, metadata.

examples:
  deft data figfont --n 2000 --out data/figfont_train.jsonl
  deft data figfont --n 500 --split test --out data/figfont_test.jsonl
  deft data rg:basic_arithmetic --n 1000 --task-args min_terms=2 max_terms=3 --out data/arith.jsonl
  deft data math numina.parquet --n 10000 --skip-invalid --out data/math.jsonl
  deft data mix --part figfont=0.5 --part data/math.jsonl=0.5 --n 4000 --out data/mix.jsonl
  deft data stats data/math.jsonl --model smollm2-135m --max-length 2048"""

_NAMES = ("figfont", "rg", "math", "medical", "mix", "jsonl", "json", "parquet", "generic", "records", "check", "stats")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "data", help="build, check and measure training/evaluation record files",
        description="Write records (one JSON object per line) from a source, validate a file (every problem "
                    "reported as FILE:LINE: what is wrong), or print token-length statistics.",
        epilog=SOURCES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help="figfont, rg:TASK, math, medical, mix, jsonl, check, stats, or a record file")
    p.add_argument("input", metavar="FILE", nargs="?", help="input file, datasets directory or hub dataset id (math, medical, jsonl, check, stats)")
    p.add_argument("--out", "-o", metavar="FILE", help="output JSON Lines file (written atomically); required except for check and stats")
    p.add_argument("--n", type=int, metavar="N", help="number of records: generated for figfont/rg (default 1000), total for mix, "
                                                      "a seeded sample for files (default: all rows)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed for generation, sampling and mixing (default 0; the paper protocol fixes 42)")
    p.add_argument("--protocol", choices=("deft", "paper"), default="deft",
                   help="deft (default) or paper: figfont/math/medical exactly as the paper's reference pipeline "
                        "builds them (FigFont seed 42, train = items 0-39,999, test = 40,000-44,999; its prompts)")
    p.add_argument("--model-key", metavar="KEY", help="the paper's model key (e.g. qwen-2.5-math-1.5b): picks the "
                                                       "prompt family of --protocol paper math/medical")
    p.add_argument("--split", default="train", metavar="SPLIT",
                   help="train or test for generated tasks (disjoint questions); the split to read from datasets (default train)")
    p.add_argument("--task-args", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="parameters of the reasoning-gym task config (values read as JSON), e.g. max_word_len=7")
    p.add_argument("--part", action="append", default=[], metavar="SPEC=PROPORTION",
                   help="a mix component: figfont, rg:TASK, math:FILE, medical:FILE or a record file, with its proportion")
    p.add_argument("--map", action="append", default=[], metavar="KEY=COLUMN",
                   help="read KEY from another column name, e.g. prompt=question (math: problem/solution/answer/id; "
                        "medical: question/options/answer_idx/answer/reasoning/id; files: record keys)")
    p.add_argument("--system", metavar="TEXT", help="system prompt for generated tasks (figfont has its own default; '' for none)")
    p.add_argument("--prompt-suffix", metavar="TEXT", help="text appended to math/medical prompts (default: the paper's "
                                                          "'Please reason step by step, and put your final answer within \\boxed{}.')")
    p.add_argument("--keep-extra", action="store_true", help="keep unrecognised columns of a record file under 'metadata'")
    p.add_argument("--skip-invalid", action="store_true", help="drop invalid records and report their count instead of failing")
    p.add_argument("--max-errors", type=int, default=20, metavar="K", help="how many problems to print (default 20; all are counted)")
    p.add_argument("--model", metavar="M", help="model whose tokenizer checks templating/truncation (needed by stats): "
                                                "smollm2-135m, a .gguf file, a model directory or a hub id")
    p.add_argument("--max-length", type=int, metavar="L", help="maximum tokens per example: with --model, records are checked "
                                                               "against it; stats counts the records longer than it")
    p.add_argument("--truncation", choices=("left", "right", "drop"), default="left",
                   help="over-long records: left = cut the prompt from the left (default), right = cut the end "
                        "(all-prompt records are errors), drop = leave them out")
    p.add_argument("--template", choices=("auto", "chat", "plain", "qa", "paper", "paper:qwen", "paper:llama", "paper:deepseek"),
                   default="auto", help="prompt template: the tokenizer's chat template (auto when it has one), a plain text "
                                        "template, or the paper's literal strings (paper: the family from the model name)")
    p.add_argument("--all-turns", action="store_true", help="train on every assistant turn of a conversation, not only the last")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own tokenizer code (only for models you trust)")
    p.set_defaults(func=run)


def _check_source(args) -> str:
    name = args.source.partition(":")[0]
    if name in _NAMES:
        return name
    if Path(args.source).expanduser().exists() or args.source.count("/") == 1:
        args.input, args.source = args.source, "jsonl"
        return "jsonl"
    raise ValueError(f"unknown source {args.source!r}; use figfont, rg:TASK, math, medical, mix, jsonl, check, stats or a file path")


def _tokenizer(args):
    from ..model import load_tokenizer

    return load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)


def _fail_with_problems(report, source: str):
    from ..data import DataError

    for line in report.problem_lines():
        print(line, file=sys.stderr)
    raise DataError(report, source)


def _stats(args) -> int:
    from ..data import parse_key_map, token_stats
    from ..data.stats import DEFAULT_LENGTHS

    if not args.input:
        raise ValueError("stats needs a FILE: deft data stats FILE --model M")
    if not args.model:
        raise ValueError("stats needs --model (the tokenizer to count with), e.g. --model smollm2-135m")
    stats = token_stats(args.input, _tokenizer(args), key_map=parse_key_map(args.map), split=args.split,
                        template=args.template, all_turns=args.all_turns, max_problems=args.max_errors)
    lengths = (args.max_length,) if args.max_length else DEFAULT_LENGTHS
    print(stats.format(args.input, lengths))
    if stats.report.invalid:
        for line in stats.report.problem_lines():
            print(line, file=sys.stderr)
        if not args.skip_invalid:
            from ..data import DataError

            raise DataError(stats.report, args.input)
    return 0


def _seed(args) -> int:
    from ..data.paper import PAPER_SEED

    if args.protocol != "paper":
        return 0 if args.seed is None else args.seed
    if args.seed not in (None, PAPER_SEED):
        raise ValueError(f"--seed {args.seed}: the paper protocol uses seed {PAPER_SEED} (drop --seed)")
    return PAPER_SEED


def run(args) -> int:
    from ..data import RecordTokenizer, ValidationReport, check_records, source_records, write_jsonl
    from ..data.sources import parse_mix_part, parse_task_args

    name = _check_source(args)
    if args.max_length is not None and args.max_length < 2:
        raise ValueError(f"--max-length must be at least 2 tokens (got {args.max_length})")
    if name == "stats":
        return _stats(args)
    if args.max_errors < 1:
        raise ValueError("--max-errors must be at least 1")
    if name == "check":
        if not args.input:
            raise ValueError("check needs a FILE: deft data check FILE")
        source = "jsonl"
    else:
        source = args.source
        if not args.out:
            raise ValueError(f"{args.source} needs --out FILE (where to write the records)")
        from ..data import check_output_path

        check_output_path(args.out)
    if args.max_length and not args.model:
        raise ValueError("--max-length needs --model (lengths are counted in that model's tokens)")
    n = args.n
    if n is None and name in ("figfont", "rg") and args.protocol == "deft":
        n = 1000
    seed = _seed(args)
    items = source_records(
        source, input=args.input, n=n, seed=seed, split=args.split,
        task_args=parse_task_args(args.task_args), key_map=args.map, system=args.system,
        prompt_suffix=args.prompt_suffix, parts=[parse_mix_part(p) for p in args.part], keep_extra=args.keep_extra,
        protocol=args.protocol, model_key=args.model_key, model=args.model,
    )
    view = None
    if args.model:
        view = RecordTokenizer(_tokenizer(args), template=args.template, max_length=args.max_length,
                               truncation=args.truncation, all_turns=args.all_turns)
    report = ValidationReport(max_problems=args.max_errors)
    label = args.input or args.source

    def records():
        for _, rec in check_records(items, report, tokenizer=view):
            yield rec
        if report.invalid and not args.skip_invalid:
            _fail_with_problems(report, label)  # raises before the output file is put in place
        if report.valid == 0 and name != "check":
            raise ValueError(f"no records to write to {args.out} ({report.summary()})")

    if name == "check":
        for _ in records():
            pass
        if report.invalid:
            print(f"skipped {report.invalid} invalid record{'s' if report.invalid != 1 else ''} (--skip-invalid)", file=sys.stderr)
        print(report.summary())
        return 0
    written = write_jsonl(records(), args.out)
    if report.invalid:
        print(f"skipped {report.invalid} invalid record{'s' if report.invalid != 1 else ''} (--skip-invalid)", file=sys.stderr)
    extra = f", split {args.split}, seed {seed}" if name in ("figfont", "rg", "mix") else ""
    if args.protocol == "paper":
        extra += ", paper protocol"
    print(f"wrote {written} records to {args.out} ({report.summary()}{extra})")
    return 0
