#!/usr/bin/env bash
# One cell of the paper's Table 3 (model-weak, FigFont) with the reference's presets:
# the plan (hyper-parameters, one run per objective, the published numbers beside each).
# Run from the repository root: bash examples/paper/figfont.sh
set -euo pipefail
deft compare --protocol paper --regime figfont --model-key llama-3.2-3b \
  --objectives original,p,Cayley_Trans,DEFT --out runs/paper/figfont-llama-3.2-3b --dry-run
