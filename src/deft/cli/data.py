"""``deft data``: write record files from the paper's regimes, reasoning-gym tasks, mixtures and
users' files; check files; print token-length statistics. Parses :class:`deft.data.config.DataConfig`
and calls :func:`deft.data.command.run_data`."""

from __future__ import annotations

import argparse

from ..config import add_config_flags, config_from_args
from ..data.config import DataConfig

SOURCES_HELP = """sources:
  figfont            FigFont puzzles (reasoning-gym figlet_font, words of 2-5 letters, space_letters=True)
  rg:TASK            any reasoning-gym task, e.g. rg:basic_arithmetic (parameters with --task-args)
  math FILE|ID       NuminaMath-CoT-style rows (problem, solution with a final \\boxed{})
  medical FILE|ID    m23K-style multiple-choice rows (question, options, answer_idx, reasoning)
  mix                several sources in proportions: --part SPEC=PROPORTION (repeat)
  jsonl FILE|ID      validate and normalise your own records (also: a file path as SOURCE)
  check FILE         validate a record file only (no output)
  stats FILE         token-length statistics with --model's tokenizer

FILE is a .jsonl, .json, .parquet, .csv or .tsv file or a datasets save_to_disk directory; ID a Hugging
Face dataset id (needs network). Records are {"messages": [...]}, {"prompt": ..., "response": ...} or
TRL's {"prompt": ..., "completion": ...} (strings or lists of messages), with optional system, answer,
task, id, weight, token_weights, metadata; Alpaca and ShareGPT rows are read too, other column names
with --map KEY=COLUMN.

--protocol paper builds figfont, math and medical as the paper's reference pipeline does (FigFont:
seed 42, --split train = items 0-39,999, test = 40,000-44,999; math/medical: the prompt of the model
family named by --model-key); train and evaluate them with --template paper.

examples:
  deft data figfont --n 2000 --out data/figfont_train.jsonl
  deft data figfont --n 500 --split test --out data/figfont_test.jsonl
  deft data figfont --protocol paper --split test --out data/figfont_paper_test.jsonl
  deft data medical m23k.parquet --protocol paper --model-key qwen-2.5-1.5b --out data/medical.jsonl
  deft data rg:basic_arithmetic --n 1000 --task-args min_terms=2 max_terms=3 --out data/arith.jsonl
  deft data math numina.parquet --n 10000 --skip-invalid --out data/math.jsonl
  deft data mix --part figfont=0.5 --part data/math.jsonl=0.5 --n 4000 --out data/mix.jsonl
  deft data stats data/math.jsonl --model smollm2-135m --max-length 2048"""


def add_parser(subparsers) -> None:
    from .main import add_verb_parser

    p = add_verb_parser(
        subparsers, "data",
        description="Write records (one JSON object per line) from a source, validate a file (every problem "
                    "reported as FILE:LINE: what is wrong), or print token-length statistics. Options may also "
                    "come from --config FILE (YAML).",
        epilog=SOURCES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE",
                   help="figfont, rg:TASK, math, medical, mix, jsonl, check, stats, or a record file")
    p.add_argument("input", metavar="FILE", nargs="?",
                   help="input file, datasets directory or hub dataset id (math, medical, jsonl, check, stats)")
    add_config_flags(p, DataConfig)
    p.add_argument("-o", dest="out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--task-args", dest="task_args", nargs="+", action="extend", default=argparse.SUPPRESS,
                   metavar="KEY=VALUE",
                   help="parameters of the reasoning-gym task config (values read as JSON), e.g. max_word_len=7")
    p.add_argument("--part", action="append", default=argparse.SUPPRESS, metavar="SPEC=PROPORTION",
                   help="a mix component: figfont, rg:TASK, math:FILE, medical:FILE or a record file, with its "
                        "proportion (repeat)")
    p.add_argument("--map", "--key-map", dest="map", action="append", default=argparse.SUPPRESS, metavar="KEY=COLUMN",
                   help="read KEY from another column name, e.g. prompt=question (repeat); see 'map' in the config")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = config_from_args(DataConfig, args, extra={"source": args.source, "input": args.input})
    from ..data.command import run_data

    print(run_data(cfg))
    return 0
