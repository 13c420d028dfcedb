#!/usr/bin/env bash
# Small-scale replication on the embedded SmolLM2-135M-Instruct (2 CPU cores), two regimes:
#   FigFont (model-weak, the paper's Table 3) and reasoning-gym word_sorting (the probe says
#   intermediate). Each: probe the base model, then compare NLL, -p and DEFT with identical data,
#   seed and hyper-parameters. Run from the repository root: bash docs/results/run.sh
set -euo pipefail
DEFT=${DEFT:-.venv/bin/deft}
RUN=runs/replication

regime() {  # name, data source, benchmark, max new tokens, optimizer steps (x 8 examples), eval problems
  local name=$1 source=$2 bench=$3 tokens=$4 steps=$5 eval=$6
  $DEFT data "$source" --n $((steps * 8)) --seed 0 --out $RUN/data/$name.jsonl
  $DEFT probe --model smollm2-135m --data $RUN/data/$name.jsonl --n 64 --gates none --out docs/results/$name/probe
  $DEFT compare --model smollm2-135m --train $RUN/data/$name.jsonl --objectives nll,p,deft \
    --benchmark "$bench" --eval-size "$eval" --max-new-tokens "$tokens" --out $RUN/$name \
    max_steps="$steps" batch_size=8 max_length=512 seed=0
  cp $RUN/$name/results.md $RUN/$name/results.csv docs/results/$name/
  $DEFT plot --runs nll=$RUN/$name/runs/nll,p=$RUN/$name/runs/p,deft=$RUN/$name/runs/deft \
    --probes base=docs/results/$name/probe --out docs/results/$name/plots
}

regime figfont figfont figfont 12 24 48
regime word_sorting rg:word_sorting rg:word_sorting 96 8 24
