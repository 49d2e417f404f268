#!/usr/bin/env bash
# The CPU figures of bench/RESULTS.md, as one script (about an hour on the
# 2-core development machine; run it on an otherwise idle machine). Every
# sweep writes its per-run JSON, the exact command and a summary under
# bench/results/<UTC date>-cpu-*/; the engine-step runs write JSON beside them.
#
#   STAGES="step tiny large-online large-2pass ceiling" bash bench/cpu_run.sh
#
# BEFORE=DIR: a checkout of an older captiond to time its engine step in the
# same run (e.g. `git worktree add /tmp/before a20b56f`).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python}
DAY=$(date -u +%F)
STAGES=${STAGES:-step tiny large-online large-2pass ceiling}
TINY=${TINY:-bench/out/models-tiny}
LARGE=${LARGE:-bench/out/models-large}
quiet() { grep -v "INFO\|WARN\|ffmpeg\|brew\|If you\|apt install"; }

for stage in $STAGES; do
case $stage in
step)  # engine alone, tiny model: per-stream-chunk cost outside the model's arithmetic
    out=bench/results/$DAY-cpu-engine-step; mkdir -p "$out"
    for run in 1 2 3; do
        if [ -n "${BEFORE:-}" ]; then
            (cd "$BEFORE" && PYTHONPATH=$PWD $PY -m bench.engine_step_bench \
                --model-dir "$OLDPWD/$TINY" --device cpu --batch-sizes 1,64,256 \
                --json "$OLDPWD/$out/before-run$run.json") 2>&1 | quiet
        fi
        for frontend in batched funasr; do
            $PY -m bench.engine_step_bench --model-dir "$TINY" --device cpu \
                --batch-sizes 1,64,256 --frontend $frontend \
                --json "$out/after-$frontend-run$run.json" 2>&1 | quiet
        done
    done
    echo "BEFORE=${BEFORE:-} STAGES=step bash bench/cpu_run.sh" > "$out/command.txt";;
tiny)  # the whole server, tiny model, online mode: batch 1 vs batched
    $PY -m bench.load --size tiny --model-dir "$TINY" --mode online --configs batch1,batched \
        --start 64 --max-streams 1024 --precision 0.1 --repeat 3 --duration 15 \
        --label cpu-tiny-online 2>&1 | quiet;;
large-online)
    $PY -m bench.load --size large --model-dir "$LARGE" --mode online \
        --configs batch1,batched,batched-int8 --start 4 --max-streams 64 --precision 0.1 \
        --repeat 3 --duration 15 --label cpu-large-online 2>&1 | quiet;;
large-2pass)
    $PY -m bench.load --size large --model-dir "$LARGE" --mode 2pass \
        --configs batch1,batched-int8 --start 2 --max-streams 32 --precision 0.1 \
        --repeat 3 --duration 15 --label cpu-large-2pass 2>&1 | quiet;;
ceiling)  # the large model's arithmetic against this CPU, float32 and int8
    out=bench/results/$DAY-cpu-large-int8-ceiling; mkdir -p "$out"
    for run in 1 2 3; do
        for batch in 8 16; do
            cmd="$PY -m bench.cpu_ceiling --model-dir $LARGE --quantize int8 --batch $batch"
            cmd="$cmd --json $out/batch$batch-run$run.json"
            echo "$cmd" >> "$out/command.txt"
            $cmd 2>&1 | quiet
        done
    done;;
esac
done
