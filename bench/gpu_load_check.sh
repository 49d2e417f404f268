#!/usr/bin/env bash
# The load generator at scale on a lent GPU machine (16 cores), as one short
# script: (1) the generator alone, SINK_N streams against bench/load_sink.py,
# to show the clients hold real time; (2) the tiny generated model on the GPU
# at each of COUNTS streams, one run each, for the server's "where time goes"
# figures at that scale (not capacity records: one run, tiny model). Results
# (per-run JSON, command, summary) are packed into $OUT/results.tgz.
set -u
OUT=${OUT:-bench/out/gpu-load}
DURATION=${DURATION:-12}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
ulimit -n 65536
{ nproc; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; } 2>&1 | tee "$OUT/log.txt"
quiet() { grep -v "INFO\|WARN\|ffmpeg\|If you\|brew" | tee -a "$OUT/log.txt"; }
# packed after every stage, so a run cut short still brings back what it measured
pack() { tar -czf "$OUT/results.tgz" -C "$OUT" results; }

echo "=== +${SECONDS}s sink: ${SINK_N:-2000} streams" | tee -a "$OUT/log.txt"
timeout 120 python3 -m bench.load --configs sink --counts "${SINK_N:-2000}" --repeat 1 \
    --duration "$DURATION" --results-dir "$OUT/results/sink" 2>&1 | quiet
pack

echo "=== +${SECONDS}s tiny models" | tee -a "$OUT/log.txt"
timeout 60 python3 -m server.cli make-test-models /tmp/models-tiny --size tiny 2>&1 | tail -1
for n in ${COUNTS:-500 2000}; do
    echo "=== +${SECONDS}s tiny, ${DEVICE:-cuda}, $n streams" | tee -a "$OUT/log.txt"
    timeout 140 python3 -m bench.load --size tiny --model-dir /tmp/models-tiny --device "${DEVICE:-cuda}" \
        --configs batched-gpu --counts "$n" --repeat 1 --duration "$DURATION" \
        --results-dir "$OUT/results/tiny-$n" 2>&1 | quiet
    pack
done
rm -rf "$OUT/results"
echo "=== +${SECONDS}s done" | tee -a "$OUT/log.txt"
