"""Real-time load sweep for captiond: how many live streams one server holds.

For each configuration it starts `captiond serve` (the large generated model
by default), warms it up, then finds the largest number N of real-time streams
it holds: doubling from --start, then bisection, bounded by --max-streams. A
run of N streams is *held* when no stream errs or is refused, the p95 partial
delay is <= 1 s and the p95 end-of-stream lag is <= 2 s (and the clients kept
their own pace). The whole search is repeated --repeat times per server; the
reported figure is the median over repeats.

Clients (bench/load_clients.py): N streams over --client-procs processes
(default ceil(N / --streams-per-proc)), one uvloop event loop and one frame
clock per process, each stream sending FunASR-client-sized frames
(--frame-ms, default 60) of --wav from a random offset, joining at a random
tick within --ramp seconds. Partial delay: from sending the frame that
completes a chunk to receiving the partial covering it (the partial that
closes an utterance after the endpoint silence excluded). End-of-stream lag:
from sending is_speaking:false to the is_final:true message.

Where time goes, over each run's steady window (all N streams live), from
/health deltas: online and final engine lanes busy share, event-loop busy
share and wakeup lag, per-frame front-end cost (µs), chunks/s, mean batch;
server CPU % and RSS; client CPU.

Results: one JSON per run, with the exact command line and machine info, and
summary.json, under --results-dir (default bench/results/<date>-<label>/).

    python -m bench.load                                  # large model; batch1 vs batched
    python -m bench.load --size tiny --configs batched --start 50 --max-streams 200 \\
        --repeat 1 --duration 10                          # a quick check, tiny model
    python -m bench.load --device cuda --configs batched-gpu-fp16 --start 256 \\
        --max-streams 4096 --label h100                   # GPU sweep
    python -m bench.load --configs sink --counts 2000 --repeat 1   # the clients alone

More in bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import resource
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import soundfile

from bench.load_clients import ClientPlan, ClientReport, client_process
from bench.load_report import HEADER, RunResult, row, summarise_config, summarise_run
from bench.load_server import (
    ROOT,
    SINK,
    ServerProcess,
    Snapshot,
    gpu_memory_mb,
    machine,
    rss_mb,
    wait_idle,
    window_metrics,
)

CONFIGS = {
    # one process, as before --workers existed: the baselines and the CPU rows
    "batch1": ["--workers", "1", "--max-batch-size", "1"],
    "batched": ["--workers", "1", "--max-batch-size", "64", "--max-wait-ms", "50"],
    "batched-int8": ["--workers", "1", "--max-batch-size", "64", "--max-wait-ms", "50",
                     "--quantize", "int8"],
    # GPU rows: one batch can hold every live stream
    "batched-gpu": ["--workers", "1", "--max-batch-size", "4096", "--max-wait-ms", "50"],
    "batched-gpu-fp16": ["--workers", "1", "--max-batch-size", "4096", "--max-wait-ms", "50",
                         "--dtype", "float16"],
    # CPU, small models: the front end in two processes beside the engine process
    # (no GIL shared between the event loop and the model lane), bigger batches
    "workers2-cpu": ["--workers", "2", "--max-batch-size", "256", "--max-wait-ms", "50"],
    "batched-256": ["--workers", "1", "--max-batch-size", "256", "--max-wait-ms", "50"],
    # … with one torch thread in the engine process, so its OpenMP barriers do not
    # wait for a core the front-end processes hold (since 11-27 the default of
    # `--workers 2` on 2 cores: the same as workers2-cpu there)
    "workers2-cpu-t1": ["--workers", "2", "--max-batch-size", "256", "--max-wait-ms", "50",
                        "--threads", "1"],
    # … and with two, the default on 2 cores before 11-27
    "workers2-cpu-t2": ["--workers", "2", "--max-batch-size", "256", "--max-wait-ms", "50",
                        "--threads", "2"],
    # the whole server path: front-end worker processes (--workers auto) around one engine
    "workers-gpu-fp16": ["--workers", "auto", "--max-batch-size", "4096", "--max-wait-ms", "50",
                         "--dtype", "float16"],
    # the same with the FSMN convolutions on cuDNN (the default is cuDNN off on CUDA)
    "workers-gpu-fp16-conv": ["--workers", "auto", "--max-batch-size", "4096",
                              "--max-wait-ms", "50", "--dtype", "float16", "--fsmn-conv", "conv"],
    # the same with the FSMN convolutions as unfold + weighted sum (no cuDNN plan per shape)
    "workers-gpu-fp16-unfold": ["--workers", "auto", "--max-batch-size", "4096",
                                "--max-wait-ms", "50", "--dtype", "float16",
                                "--fsmn-conv", "unfold"],
    # … and with cuDNN off for them (PyTorch's native depthwise kernel)
    "workers-gpu-fp16-native": ["--workers", "auto", "--max-batch-size", "4096",
                                "--max-wait-ms", "50", "--dtype", "float16",
                                "--fsmn-conv", "native"],
    # … and the online encoder and decoder replayed as CUDA graphs per bucketed shape
    "workers-gpu-fp16-native-graphs": ["--workers", "auto", "--max-batch-size", "4096",
                                       "--max-wait-ms", "50", "--dtype", "float16",
                                       "--fsmn-conv", "native", "--cuda-graphs", "on"],
    # 2pass: the final pass on a thread of the engine process instead of its own
    # process (the default with an offline model), for the comparison
    "batched-finals-thread": ["--workers", "1", "--max-batch-size", "64", "--max-wait-ms", "50",
                              "--final-pass", "thread"],
    "workers-gpu-fp16-native-finals-thread": ["--workers", "auto", "--max-batch-size", "4096",
                                              "--max-wait-ms", "50", "--dtype", "float16",
                                              "--fsmn-conv", "native", "--final-pass", "thread"],
    "sink": [],  # bench/load_sink.py instead of captiond: the load generator's own cost
}
WARMUP_S = 8.0  # one stream through an utterance end: a fresh server's first forwards are slow
CONNECT_STAGGER_S = 0.2  # between client processes' first handshakes
READY_TIMEOUT_S = 180.0  # for every client process to connect its streams


# ---- the search --------------------------------------------------------------------


def search(held: Callable[[int], bool], start: int, max_streams: int,
           precision: float = 0.05) -> int:
    """Largest N in [1, max_streams] with held(N), assuming held is monotone:
    double from `start` (halve if `start` fails), then bisect until the bracket
    is within `precision` of its low end. 0 if even one stream fails."""
    low, high = 0, max_streams + 1
    n = max(1, min(start, max_streams))
    while low < n < high:  # double up or halve down until a bracket exists
        if held(n):
            low = n
            n = min(2 * n, max_streams)
        else:
            high = n
            n = n // 2 if low == 0 else n
    while high - low > max(1, int(low * precision)):
        middle = (low + high) // 2
        if held(middle):
            low = middle
        else:
            high = middle
    return low


# ---- one run -----------------------------------------------------------------------


def run_once(server: ServerProcess, args: argparse.Namespace, pcm: bytes, streams: int,
             seed: int) -> tuple[dict, list[ClientReport]]:
    """N real-time streams from several client processes; the server's window figures."""
    settle_s = wait_idle(server)
    pipes, workers, plans = _start_clients(server.url, args, pcm, streams, seed)
    try:
        for pipe in pipes:
            if not pipe.poll(READY_TIMEOUT_S):
                raise RuntimeError(f"client processes did not connect in {READY_TIMEOUT_S} s")
            pipe.recv()
        go_at = time.monotonic() + 0.5
        for pipe in pipes:
            pipe.send(go_at)
        _sleep_until(go_at + args.ramp)
        first_snapshot = Snapshot.take(server)
        _sleep_until(go_at + args.duration)
        last_snapshot = Snapshot.take(server)
        server_figures = {"rss_mb": rss_mb(server), "gpu_mb": gpu_memory_mb(server.process.pid),
                          "engine": last_snapshot.health.get("engine"), "settle_s": settle_s}
        reports = [_report(pipe, plan) for pipe, plan in zip(pipes, plans)]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    return {**window_metrics(first_snapshot, last_snapshot), **server_figures}, reports


def _start_clients(url: str, args: argparse.Namespace, pcm: bytes, streams: int,
                   seed: int) -> tuple[list, list, list[ClientPlan]]:
    procs = args.client_procs or math.ceil(streams / args.streams_per_proc)
    procs = max(1, min(procs, streams))
    context = get_context("spawn")  # no copy of this process's state, no inherited sockets
    pipes, workers, plans = [], [], []
    first = 0
    for index in range(procs):
        share = streams // procs + (index < streams % procs)
        plan = ClientPlan(url, pcm, share, args.frame_ms, args.duration, args.ramp,
                          phase_s=index * args.frame_ms / 1000 / procs, mode=args.mode,
                          seed=seed * 1000 + index, first_index=first,
                          connect_delay_s=CONNECT_STAGGER_S * index)
        first += share
        ours, theirs = context.Pipe()
        worker = context.Process(target=client_process, args=(plan, theirs), daemon=True)
        worker.start()
        pipes.append(ours)
        workers.append(worker)
        plans.append(plan)
    return pipes, workers, plans


def _report(pipe, plan: ClientPlan) -> ClientReport:
    """A client process's report; a process that died counts all its streams as errors."""
    if pipe.poll(plan.drain_timeout_s + 60):
        try:
            return pipe.recv()
        except EOFError:
            pass
    return ClientReport(plan.streams, errors={"client process died": plan.streams})


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.monotonic()))


# ---- a configuration: warm-up, repeated searches -----------------------------------


class ConfigSweep:
    def __init__(self, config: str, args: argparse.Namespace, pcm: bytes, out: Path,
                 header: dict) -> None:
        self.config, self.args, self.pcm, self.out, self.header = config, args, pcm, out, header
        self.runs: list[RunResult] = []

    def run(self, server_args: list[str]) -> list[int]:
        """Held N per repeat."""
        held = []
        if self.config == "sink":
            process = ServerProcess([], SINK)
        else:
            process = ServerProcess([*server_args, *CONFIGS[self.config]])
        with process as server:
            self.server = server
            run_once(server, _warmup_args(self.args), self.pcm, 1, seed=0)  # not recorded
            for repeat in range(1, self.args.repeat + 1):
                self.repeat = repeat
                if self.args.counts:
                    held.append(self._listed(self.args.counts))
                else:  # later repeats start at the last answer: fewer steps, same search
                    start = held[-1] if held and held[-1] else self.args.start
                    held.append(search(self._held, start, self.args.max_streams,
                                       self.args.precision))
                print(f"  {self.config} repeat {repeat}: held {held[-1]}", flush=True)
        return held

    def _listed(self, counts: list[int]) -> int:
        best = 0
        for n in counts:
            if not self._held(n):
                break
            best = n
        return best

    def _held(self, streams: int) -> bool:
        seed = len(self.runs) + 1
        figures, reports = run_once(self.server, self.args, self.pcm, streams, seed)
        result = summarise_run(self.config, self.repeat, streams, figures, reports, self.args)
        self.runs.append(result)
        print(row(result), flush=True)
        name = f"{self.config}-r{self.repeat}-n{streams:05d}.json"
        (self.out / name).write_text(json.dumps({**self.header, "run": asdict(result)},
                                                indent=2))
        return result.held


def _warmup_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "duration": WARMUP_S, "ramp": 0.0,
                                 "client_procs": 1})


# ---- main --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--size", default="large", choices=["tiny", "large"],
        help="generated model size (default: large, the real paraformer-large shape)")
    add("--model-dir", type=Path, default=None,
        help="models root (paraformer-streaming/, paraformer-offline/, ct-punc/); "
             "generated there if missing (default: bench/out/models-<size>)")
    add("--configs", default="batch1,batched",
        help=f"comma-separated, first is the baseline of the ratios: {', '.join(CONFIGS)}")
    add("--mode", default="2pass", choices=["2pass", "online"],
        help="2pass: partials and finals (the default service); online: partials only")
    add("--device", default="auto")
    add("--threads", type=int, default=None, help="server --threads")
    add("--admission", action="store_true",
        help="leave the server's admission control on (default off: find where it breaks)")
    add("--start", type=int, default=1, help="first N of the doubling search")
    add("--max-streams", type=int, default=2048, help="upper bound of the search")
    add("--precision", type=float, default=0.05,
        help="bisect until the bracket is within this share of the held N")
    add("--counts", default=None,
        help="instead of the search: these N in order, stopping at the first that fails")
    add("--repeat", type=int, default=3, help="searches per configuration (median reported)")
    add("--duration", type=float, default=20.0, help="seconds of audio per stream per run")
    add("--ramp", type=float, default=3.0, help="streams join within this many seconds")
    add("--frame-ms", type=int, default=60, help="audio per frame (the FunASR client: 60)")
    add("--wav", type=Path, default=ROOT / "tests" / "data" / "multi.wav")
    add("--client-procs", type=int, default=0, help="client processes (0: auto)")
    add("--streams-per-proc", type=int, default=250, help="auto --client-procs: ceil(N / this)")
    add("--held-p95-s", type=float, default=1.0, help="held: p95 partial delay at most this")
    add("--held-end-lag-s", type=float, default=2.0, help="held: p95 end-of-stream lag")
    add("--label", default=None, help="results folder suffix (default: <size>-<mode>)")
    add("--results-dir", type=Path, default=None,
        help="default: bench/results/<UTC date>-<label>/")
    args = parser.parse_args(argv)
    args.counts = [int(c) for c in args.counts.split(",")] if args.counts else None
    args.model_dir = args.model_dir or ROOT / "bench" / "out" / f"models-{args.size}"
    if args.results_dir is None:
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        label = args.label or f"{args.size}-{args.mode}"
        args.results_dir = ROOT / "bench" / "results" / f"{date}-{label}"
    if args.ramp >= args.duration:
        parser.error("--ramp must be shorter than --duration: the window is what is left")
    return args


def ensure_models(model_dir: Path, size: str) -> Path:
    if not (model_dir / "paraformer-streaming" / "model.pt").exists():
        print(f"generating the {size} test models into {model_dir} …", flush=True)
        subprocess.run([sys.executable, "-m", "server.cli", "make-test-models", str(model_dir),
                        "--size", size], check=True, cwd=ROOT)
    return model_dir


def _raise_open_files_limit() -> None:
    # thousands of sockets: the server and the client processes inherit this
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def captiond_args(args: argparse.Namespace) -> list[str]:
    """`captiond serve` options common to every configuration (models generated if missing)."""
    if all(config == "sink" for config in args.configs.split(",")):
        return []
    models = ensure_models(args.model_dir, args.size)
    # admission control refuses streams past the measured capacity (counted as refusals)
    admission = [] if args.admission else ["--no-calibrate", "--no-admission"]
    return [
        "--device", args.device, *admission,
        # every client is on 127.0.0.1 here: lift the per-address cap (server/limits.py)
        "--max-connections-per-address", "1000000",
        "--online-model", str(models / "paraformer-streaming"),
        "--offline-model", str(models / "paraformer-offline"),
        "--punc-model", str(models / "ct-punc"),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    # `timeout` and Ctrl-C must not leave a server behind holding the machine
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    _raise_open_files_limit()
    server_args = captiond_args(args)
    samples, rate = soundfile.read(args.wav, dtype="int16")
    assert rate == 16000 and samples.ndim == 1, "the load WAV must be 16 kHz mono"
    pcm = samples.astype("<i2").tobytes()
    out = args.results_dir
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.load " + shlex.join(argv)
    (out / "command.txt").write_text(command + "\n")
    header = {"command": command, "machine": machine(args.device),
              "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    print(" ".join(f"{h:>8}" for h in HEADER), flush=True)
    configs = args.configs.split(",")
    sweeps = {config: ConfigSweep(config, args, pcm, out, header) for config in configs}
    held = {config: sweep.run(server_args) for config, sweep in sweeps.items()}
    summary = {config: summarise_config(held[config], sweeps[config].runs) for config in configs}
    write_summary(out, header, summary, configs, args)
    return 0


def write_summary(out: Path, header: dict, summary: dict, configs: list[str],
                  args: argparse.Namespace) -> None:
    """summary.json, and the ratios to the first configuration, from this one invocation."""
    baseline = summary[configs[0]]["held_median"]
    key = "ratio_to_" + configs[0]
    for config in configs:
        held = summary[config]["held_median"]
        summary[config][key] = round(held / baseline, 2) if baseline else None
    (out / "summary.json").write_text(json.dumps({**header, "summary": summary}, indent=2))
    print("\nstreams held (median of repeats; p95 partial <= "
          f"{args.held_p95_s} s, p95 end lag <= {args.held_end_lag_s} s):")
    for config in configs:
        s = summary[config]
        print(f"  {config:>16}: {s['held_median']} (repeats {s['held']}), "
              f"{s[key]}x {configs[0]}")
    print(f"wrote {out}/")


if __name__ == "__main__":
    sys.exit(main())
