#!/usr/bin/env bash
# One cell of the paper's Table 2 (model-intermediate, m23K) with the reference's presets:
# the plan (hyper-parameters, one run per objective, the published numbers beside each).
# Run from the repository root: bash examples/paper/medical.sh
set -euo pipefail
deft compare --protocol paper --regime medical --model-key llama-3.1-8b \
  --objectives original,p,Cayley_Trans,DEFT --out runs/paper/medical-llama-3.1-8b --dry-run
