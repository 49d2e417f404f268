#!/usr/bin/env bash
# Where the engine process of a loaded GPU server spends its time: the whole
# server path (--workers auto, batched float16) in online mode at N streams,
# sampled with py-spy (carried as a wheel in .whl/) for SPY_S seconds while
# the measured run is on. Output under $OUT: spy_engine.txt (py-spy raw
# stacks, one line per stack with its sample count) and the load run's JSON.
# Sized for what is left of a lent machine's time: about two minutes.
set -u
OUT=${OUT:-bench/out/gpu-profile}
N=${N:-1000}
SPY_S=${SPY_S:-6}
MODELS=${MODELS:-/tmp/models-large}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
[ -d "$MODELS" ] || timeout 60 python3 -m server.cli make-test-models "$MODELS" --size large \
    > /dev/null 2>&1
timeout 110 python3 -m bench.load --size large --model-dir "$MODELS" --device "${DEVICE:-cuda}" \
    --mode "${MODE:-online}" --configs "${CONFIG:-workers-gpu-fp16}" --counts "$N" --duration 14 --ramp 3 \
    --repeat 1 --results-dir "$OUT/load" 2>&1 | grep -v "INFO\|WARN\|ffmpeg\|brew\|If you" &
bench=$!
python3 - "$N" <<'PY'  # wait until the measured run's streams are connected
import json, subprocess, sys, time, urllib.request
import psutil
deadline = time.time() + 100
while time.time() < deadline:
    time.sleep(1)
    pids = subprocess.run(["pgrep", "-f", "server.cli serve"], capture_output=True,
                          text=True).stdout.split()
    if not pids:
        continue
    main = psutil.Process(int(pids[0]))
    ports = {c.laddr.port for p in [main, *main.children()] for c in (getattr(p, "net_connections", None) or p.connections)("tcp")
             if c.status == "LISTEN"}
    try:
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{min(ports)}/health", timeout=2))
    except Exception:
        continue
    if health.get("live_streams", 0) >= int(sys.argv[1]) // 2:
        break
PY
sleep 3
pid=$(pgrep -f "server.cli serve" | head -1)
[ -n "$pid" ] && py-spy record -p "$pid" -d "$SPY_S" -r 100 --threads ${SPY_SUBPROCESSES:+--subprocesses} -f raw \
    -o "$OUT/spy_engine.txt" > /dev/null 2>&1
wait "$bench"
tar -czf "$OUT/load.tgz" -C "$OUT" load && rm -rf "$OUT/load"
echo done
