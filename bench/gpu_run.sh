#!/usr/bin/env bash
# The GPU figures of bench/RESULTS.md, as one script for a lent GPU machine
# (no network there): install captiond's dependencies from wheels carried in
# .whl/ (if present), check the CUDA path with the tiny models, generate the
# large models, time the engine step and run the load sweeps. Stages run in
# order of importance inside one time budget (BUDGET_S seconds); each writes
# into $OUT (default bench/out/gpu) and a failed stage does not stop the next.
set -u
OUT=${OUT:-bench/out/gpu}
BUDGET_S=${BUDGET_S:-540}
DEVICE=${DEVICE:-cuda}  # cpu: a dry run of this script on a machine without a GPU
SIZE=${SIZE:-large}
MODELS=${MODELS:-/tmp/models-$SIZE}
mkdir -p "$OUT"
deadline=$((SECONDS + BUDGET_S))
log() { echo "=== +${SECONDS}s $*" | tee -a "$OUT/stages.txt"; }
# at most $1 seconds, and never past the deadline
cap() { local left=$((deadline - SECONDS)); echo $(( left < $1 ? (left > 5 ? left : 5) : $1 )); }

source "$(dirname "$0")/gpu_env.sh"
ulimit -n 65536
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" \
    2>&1 | tee -a "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"

log "cuda tests (tiny models)"
[ -n "${SKIP_TESTS:-}" ] || timeout "$(cap 150)" python3 -m pytest -q -s -p no:cacheprovider -o addopts="" -W default \
    tests/streaming/engines/test_paraformer_cuda.py 2>&1 | grep -v INFO | tail -25 \
    | tee "$OUT/cuda_tests.txt"

log "large models"
timeout "$(cap 150)" python3 -m server.cli make-test-models "$MODELS" --size "$SIZE" \
    2>&1 | tail -3

log "engine step float16"
timeout "$(cap 100)" python3 -m bench.engine_step_bench --model-dir "$MODELS" --device "$DEVICE" \
    --dtype float16 --batch-sizes "${STEP_FP16:-1,64,256,1024}" \
    --json "$OUT/step_fp16.json" 2>&1 | grep -v "INFO\|WARN" | tee "$OUT/step_fp16.txt"

log "engine step float16, buckets off (the default on CUDA pads batches to bucket sizes)"
timeout "$(cap 100)" python3 -m bench.engine_step_bench --model-dir "$MODELS" --device "$DEVICE" \
    --dtype float16 --buckets off --batch-sizes "${STEP_FP16:-1,64,256,1024}" \
    --json "$OUT/step_fp16_nobuckets.json" 2>&1 | grep -v "INFO\|WARN" \
    | tee "$OUT/step_fp16_nobuckets.txt"

for mode in ${MODES:-2pass}; do
    log "load sweep ($mode): batched float16"
    timeout "$(cap 220)" python3 -m bench.load --model-dir "$MODELS" --device "$DEVICE" \
        --configs batched-gpu-fp16 --duration "${DURATION:-10}" --client-procs 8 --mode "$mode" \
        --counts "${COUNTS_BATCHED:-64,128,256,384,512,768,1024,1536}" \
        --repeat "${REPEAT:-1}" --results-dir "$OUT/load_${mode}_batched" \
        2>&1 | grep -v "INFO\|WARN\|ffmpeg\|brew\|If you" \
        | tee "$OUT/load_${mode}_batched.txt"
    pkill -f "server.cli serve"; sleep 1

    log "load sweep ($mode): batch 1"
    timeout "$(cap 110)" python3 -m bench.load --model-dir "$MODELS" --device "$DEVICE" \
        --configs batch1 --duration "${DURATION:-10}" --client-procs 8 --mode "$mode" \
        --counts "${COUNTS_BATCH1:-4,8,16,24,32,48,64}" \
        --repeat "${REPEAT:-1}" --results-dir "$OUT/load_${mode}_batch1" \
        2>&1 | grep -v "INFO\|WARN\|ffmpeg\|brew\|If you" \
        | tee "$OUT/load_${mode}_batch1.txt"
    pkill -f "server.cli serve"; sleep 1
done

log "engine step float32 and FunASR batch-1"
timeout "$(cap 90)" python3 -m bench.engine_step_bench --model-dir "$MODELS" --device "$DEVICE" \
    --funasr --batch-sizes "${STEP_FP32:-1,64,256}" --json "$OUT/step_fp32.json" 2>&1 \
    | grep -v "INFO\|WARN" | tee "$OUT/step_fp32.txt"
log "done"
