#!/usr/bin/env bash
# The GPU figures of bench/RESULTS.md, as one script for a lent GPU machine
# (no network there; 15 minutes of device time in all, so one run): install
# captiond's dependencies from wheels carried in .whl/ (if present; made by
# bench/gpu_wheels.sh), run the
# CUDA tests with the tiny models, generate the large models, then, each
# stage capped and in order of importance inside one budget (BUDGET_S):
#   1. engine step, float16: FSMN convolutions as Conv1d, unfold, or Conv1d with
#      cuDNN off (same tokens), at steady and at varying batch sizes: the H200
#      profile of 2026-11-26 found 54 % of the online lane in those convolutions
#      when the batch size changes each step;
#   2. "profile": one engine step each at PROFILE_SIZES streams under torch's
#      profiler: operators and kernels per step, the kernels' time against the wall;
#   3. online load sweep of the whole server path (front-end workers, batched
#      float16, batched features) with the variant that step found cheapest, at
#      COUNTS_WORKERS streams;
#   4. 2pass load sweep of the whole server path (that variant), the final pass
#      in its own process (the default);
#   5. "online3": the online sweep at COUNTS_ONLINE3 with three repeats (a median);
#   6. "2pass-thread": 2pass with the final pass on a thread of the engine
#      process, for the comparison;
#   7. "2pass-profile": 2pass at N_2PASS_PROFILE streams with py-spy on the server
#      and its child processes (bench/gpu_profile.sh): where the final pass's time goes;
#   8. Conv1d on cuDNN at COUNTS_CONV for comparison, and the batch-1 baseline;
#   9. "files": bench/batch_files.py (issue 15) on the GPU;
#  10. "graphs": the engine step at PROFILE_SIZES streams, eager against the online
#      encoder and decoder as CUDA graphs (--cuda-graphs), each under the profiler too;
#      "online-graphs" and "2pass-graphs": the load sweeps with CUDA graphs on.
# Every stage writes under $OUT; per-run JSON of the load sweeps is packed into
# $OUT/results.tgz after each stage, so a run cut short still brings back what
# it measured. DEVICE=cpu SIZE=tiny NO_WHEELS=1 makes a dry run here; STAGES="2pass"
# BEST=native reruns one stage.
set -u
OUT=${OUT:-bench/out/gpu}
BUDGET_S=${BUDGET_S:-460}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE-float16}  # of the profile stage; DTYPE= for a dry run on the CPU
SIZE=${SIZE:-large}
MODELS=${MODELS:-/tmp/models-$SIZE}
DURATION=${DURATION:-10}
STAGES=${STAGES:-tests step profile online 2pass online3 2pass-thread 2pass-profile conv batch1}  # a subset reruns part of it
BEST=${BEST:-}  # FSMN variant for the load sweeps; default: what the step stage found cheapest
mkdir -p "$OUT"
want() { [[ " $STAGES " == *" $1 "* ]]; }
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
    # only what this script started (its model dir): a dry run must not stop other servers
    pkill -f "server.cli serve.*$MODELS"; pkill -f "bench.load.*$MODELS"; sleep 1
    pack
}

source "$(dirname "$0")/gpu_env.sh"
ulimit -n 65536
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
  python3 -c "import server.cli, server.engines, server.final_process, server.metrics, \
server.workers, bench.load, bench.batch_files, clients.batch; print('imports ok')"
} 2>&1 | tee "$OUT/gpu.txt"

log "cuda tests (tiny models)"
want tests && timeout "$(cap 120)" python3 -m pytest -q -p no:cacheprovider \
    -o addopts="" -W default tests/streaming/engines/test_paraformer_cuda.py \
    tests/streaming/engines/test_paraformer_features.py 2>&1 | grep -v INFO | tail -25 \
    | tee "$OUT/cuda_tests.txt"

log "$SIZE models"
timeout "$(cap 120)" python3 -m server.cli make-test-models "$MODELS" --size "$SIZE" 2>&1 | tail -2

want step && log "engine step float16, FSMN Conv1d / unfold / native, steady and varying batch sizes"
want step && for c in conv unfold native; do
    timeout "$(cap 50)" python3 -m bench.engine_step_bench --model-dir "$MODELS" \
        --device "$DEVICE" --dtype float16 --fsmn-conv $c --batch-sizes "${STEP:-1000}" \
        --ticks 6 --vary --json "$OUT/step_fp16_$c.json" 2>&1 | quiet "step.txt"
done
# the FSMN variant with the lowest cost at varying batch sizes drives the load sweeps
[ -n "$BEST" ] || BEST=$(python3 - "$OUT" <<'PY'
import json, pathlib, sys
cost = {}
for f in pathlib.Path(sys.argv[1]).glob("step_fp16_*.json"):
    rows = [r for r in json.loads(f.read_text())["rows"] if r["config"].endswith("-vary")]
    if rows:
        cost[f.stem.rsplit("_", 1)[1]] = rows[-1]["ms_per_step"]  # same sizes in each
print(min(cost, key=cost.get) if cost else "unfold")
PY
)
log "best FSMN variant at varying batch sizes: $BEST"
cfg() { echo "workers-gpu-fp16-$1"; }
want profile && log "engine step under the profiler at ${PROFILE_SIZES:-1000,250} streams" && \
    timeout "$(cap 60)" python3 -m bench.engine_step_bench --model-dir "$MODELS" \
        --device "$DEVICE" ${DTYPE:+--dtype $DTYPE} --fsmn-conv "$BEST" \
        --batch-sizes "${PROFILE_SIZES:-1000,250}" --ticks 3 --profile \
        --json "$OUT/step_profile.json" 2>&1 | quiet "step.txt"

if want graphs; then
    log "engine step float16 $BEST at ${PROFILE_SIZES:-1000,250} streams: eager, CUDA graphs"
    for g in "" --cuda-graphs; do
        timeout "$(cap 90)" python3 -m bench.engine_step_bench --model-dir "$MODELS" \
            --device "$DEVICE" ${DTYPE:+--dtype $DTYPE} --fsmn-conv "$BEST" \
            --batch-sizes "${PROFILE_SIZES:-1000,250}" --ticks 3 --profile $g \
            --json "$OUT/step_graphs${g:+_on}.json" 2>&1 | quiet "step.txt"
    done
fi
want online-graphs && load "online-workers-$BEST-graphs" 130 --mode online \
    --configs workers-gpu-fp16-native-graphs --counts "${COUNTS_WORKERS:-500,1000,1500,2000}"
want 2pass-graphs && load "2pass-workers-$BEST-graphs" "${CAP_2PASS:-100}" --mode 2pass \
    --configs workers-gpu-fp16-native-graphs --counts "${COUNTS_2PASS:-500,1000,1500}"
want online && load "online-workers-$BEST" 130 --mode online --configs "$(cfg "$BEST")" \
    --counts "${COUNTS_WORKERS:-500,1000,1500,2000}"
want 2pass && load "2pass-workers-$BEST" "${CAP_2PASS:-100}" --mode 2pass \
    --configs "$(cfg "$BEST")" --counts "${COUNTS_2PASS:-500,1000,1500}"
want online3 && load "online-workers-$BEST-x3" "${CAP_ONLINE3:-110}" --mode online \
    --configs "$(cfg "$BEST")" --counts "${COUNTS_ONLINE3:-1500}" --repeat 3
want 2pass-thread && load "2pass-workers-native-finals-thread" "${CAP_2PASS_THREAD:-70}" \
    --mode 2pass --configs workers-gpu-fp16-native-finals-thread \
    --counts "${COUNTS_2PASS_THREAD:-500}"
if want 2pass-profile; then
    log "2pass profile at ${N_2PASS_PROFILE:-1000} streams"
    OUT="$OUT/results/2pass-profile" N=${N_2PASS_PROFILE:-1000} MODE=2pass SPY_S=8 \
        SPY_SUBPROCESSES=1 MODELS=$MODELS CONFIG="${PROFILE_CONFIG:-$(cfg "$BEST")}" NO_WHEELS=1 \
        timeout "$(cap 130)" bash "$(dirname "$0")/gpu_profile.sh" 2>&1 | tail -3
    pkill -f "server.cli serve.*$MODELS"; pack
fi
want conv && [ "$BEST" != conv ] && load online-workers-conv 60 --mode online --configs workers-gpu-fp16-conv \
    --counts "${COUNTS_CONV:-500}"
want batch1 && load online-batch1 60 --mode online --configs batch1 --counts "${COUNTS_BATCH1:-8}"
if want files; then
    log "batch files (issue 15)"
    timeout "$(cap "${CAP_FILES:-90}")" python3 -m bench.batch_files --models "$MODELS" \
        --device "$DEVICE" --files "${FILES:-8}" --minutes 1 --max-batch-size 64 \
        --label "gpu-$SIZE" 2>&1 | quiet "files.txt"
    cp bench/results/*-gpu-"$SIZE"-batch-files.json "$OUT"/ 2>/dev/null
    pkill -f "server.cli serve.*$MODELS"
fi
rm -rf "$OUT/results"
log "done"
