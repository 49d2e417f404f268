#!/usr/bin/env bash
# Where a loaded GPU server spends its time: run the online load at N streams
# (default 32, where the H200 server first fell behind) and sample the server
# with py-spy (carried as a wheel in .whl/) while the measured run is on.
# Output: $OUT/spy_<label>.txt (py-spy raw stacks) and the load rows.
set -u
OUT=${OUT:-bench/out/gpu-profile}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
MODELS=${MODELS:-/tmp/models-large}
[ -d "$MODELS" ] || python3 -m server.cli make-test-models "$MODELS" --size large > /dev/null 2>&1
N=${N:-32}

profile() {  # label, then extra server options for bench.load
    local label=$1; shift
    timeout 150 python3 -m bench.load --model-dir "$MODELS" --device "${DEVICE:-cuda}" --mode online \
        --configs "${CONFIG:-batched-gpu-fp16}" --counts "$N" --duration 12 --client-procs 8 "$@" \
        --json "$OUT/load_$label.json" 2>&1 | grep -v "INFO\|WARN\|ffmpeg\|brew\|If you" \
        | tee "$OUT/load_$label.txt" &
    local bench=$!
    local pid=""
    for _ in $(seq 90); do
        sleep 1
        pid=$(pgrep -f "server.cli serve" | head -1)
        [ -n "$pid" ] && python3 - "$pid" 2>/dev/null <<'EOF' && break
import json, sys, urllib.request, psutil
proc = psutil.Process(int(sys.argv[1]))
conns = getattr(proc, "net_connections", None) or proc.connections
ports = [c.laddr.port for c in conns("tcp")
         if c.status == "LISTEN"]
health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/health", timeout=2))
sys.exit(0 if health["connections"] >= 8 else 1)  # the measured run, not the warm-up
EOF
    done
    sleep 2
    [ -n "$pid" ] && py-spy record -p "$pid" -d 7 -r 100 --idle --threads -f raw \
        -o "$OUT/spy_$label.txt" > /dev/null 2>&1
    wait "$bench"
    pkill -f "server.cli serve"; sleep 1
}

profile default
profile threads2 --threads 2
echo done
