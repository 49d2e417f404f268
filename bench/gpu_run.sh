#!/usr/bin/env bash
# The GPU figures of bench/RESULTS.md, as one script for a lent GPU machine
# (no network there; 15 minutes of device time in all, so one run): install
# captiond's dependencies from wheels carried in .whl/ (if present), run the
# CUDA tests with the tiny models, generate the large models, then, each
# stage capped and in order of importance inside one budget (BUDGET_S):
#   1. engine step, float16: FSMN convolutions as Conv1d vs unfold (same tokens);
#   2. online load sweep of the whole server path (front-end workers, batched
#      float16, batched features) with the FSMN unfold, then with Conv1d, at
#      COUNTS_WORKERS streams: the H200 profile of 2026-11-26 found 54 % of the
#      online lane in those convolutions when the batch size changes each step;
#   3. the batch-1 baseline in the same run;
#   4. 2pass load sweep of the whole server path (unfold).
# Every stage writes under $OUT; per-run JSON of the load sweeps is packed into
# $OUT/results.tgz after each stage, so a run cut short still brings back what
# it measured. DEVICE=cpu SIZE=tiny NO_WHEELS=1 makes a dry run here.
set -u
OUT=${OUT:-bench/out/gpu}
BUDGET_S=${BUDGET_S:-460}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-large}
MODELS=${MODELS:-/tmp/models-$SIZE}
DURATION=${DURATION:-10}
mkdir -p "$OUT"
deadline=$((SECONDS + BUDGET_S))
log() { echo "=== +${SECONDS}s $*" | tee -a "$OUT/stages.txt"; }
# at most $1 seconds, and never past the deadline
cap() { local left=$((deadline - SECONDS)); echo $(( left < $1 ? (left > 5 ? left : 5) : $1 )); }
quiet() { grep -v "INFO\|WARN\|ffmpeg\|brew\|If you\|apt install" | tee -a "$OUT/$1"; }
pack() { [ -d "$OUT/results" ] && tar -czf "$OUT/results.tgz" -C "$OUT" results; }
load() {  # load NAME CAP ARGS…: one bench.load sweep into $OUT/results/NAME
    local name=$1 limit=$2; shift 2
    log "load $name"
    timeout "$(cap "$limit")" python3 -m bench.load --size "$SIZE" --model-dir "$MODELS" \
        --device "$DEVICE" --duration "$DURATION" --ramp 3 --repeat 1 \
        --results-dir "$OUT/results/$name" "$@" 2>&1 | quiet "load.txt"
    pkill -f "server.cli serve"; pkill -f "bench.load"; sleep 1
    pack
}

source "$(dirname "$0")/gpu_env.sh"
ulimit -n 65536
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
} 2>&1 | tee "$OUT/gpu.txt"

log "cuda tests (tiny models)"
[ -n "${SKIP_TESTS:-}" ] || timeout "$(cap 90)" python3 -m pytest -q -p no:cacheprovider \
    -o addopts="" -W default tests/streaming/engines/test_paraformer_cuda.py \
    tests/streaming/engines/test_paraformer_features.py 2>&1 | grep -v INFO | tail -25 \
    | tee "$OUT/cuda_tests.txt"

log "$SIZE models"
timeout "$(cap 120)" python3 -m server.cli make-test-models "$MODELS" --size "$SIZE" 2>&1 | tail -2

log "engine step float16, FSMN Conv1d / unfold"
for c in conv unfold; do
    timeout "$(cap 45)" python3 -m bench.engine_step_bench --model-dir "$MODELS" \
        --device "$DEVICE" --dtype float16 --fsmn-conv $c --batch-sizes "${STEP:-250,1000}" \
        --json "$OUT/step_fp16_$c.json" 2>&1 | quiet "step.txt"
done

load online-workers-unfold 130 --mode online --configs workers-gpu-fp16-unfold \
    --counts "${COUNTS_WORKERS:-500,1000,1500,2000}"
load online-workers-conv 100 --mode online --configs workers-gpu-fp16 \
    --counts "${COUNTS_CONV:-500,1000}"
load online-batch1 70 --mode online --configs batch1 --counts "${COUNTS_BATCH1:-8,12,16}"
load 2pass-workers-unfold 90 --mode 2pass --configs workers-gpu-fp16-unfold \
    --counts "${COUNTS_2PASS:-500,1000,1500}"
rm -rf "$OUT/results"
log "done"
