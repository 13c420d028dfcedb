#!/usr/bin/env bash
# One cell of the paper's Table 1 (model-strong, NuminaMath) with the reference's presets:
# the plan (hyper-parameters, one run per objective, the published numbers beside each).
# Run from the repository root: bash examples/paper/math.sh
set -euo pipefail
deft compare --protocol paper --regime math --model-key qwen-2.5-math-1.5b \
  --objectives original,p,Cayley_Trans,DEFT --out runs/paper/math-qwen-2.5-math-1.5b --dry-run
