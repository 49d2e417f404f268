"""Load generator and capacity sweep for captiond (issue: batched inference).

Starts `captiond serve` once per configuration, then for a rising number N of
clients streams a real speech WAV from each, at real-time pace with a random
start offset, over loopback. Per run it reports: whether all N streams held
real time (p95 partial delay <= 1 s, no errors), partial delay p50/p95/p99
(from sending the last byte of a chunk to receiving the partial that covers
it), final delay after end of speech p50/p95, chunks/s, mean batch size,
server CPU% and RSS, and GPU memory where nvidia-smi exists. The sweep stops
at the first N that fails; the configurations are compared in the same run
and the ratio of streams held is printed.

    python -m bench.load                       # large generated model, default configs
    python -m bench.load --configs batch1,batched --counts 1,2,3,4,6,8 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile

from clients.client import CaptionClient, ServerError

ROOT = Path(__file__).resolve().parents[1]
FRAME_S = 0.1
HELD_P95_S = 1.0

CONFIGS = {
    "batch1": ["--max-batch-size", "1"],
    "batched": ["--max-batch-size", "64", "--max-wait-ms", "50"],
    "batched-int8": ["--max-batch-size", "64", "--max-wait-ms", "50", "--quantize", "int8"],
    # GPU rows: one batch can hold every live stream
    "batched-gpu": ["--max-batch-size", "4096", "--max-wait-ms", "50"],
    "batched-gpu-fp16": ["--max-batch-size", "4096", "--max-wait-ms", "50", "--dtype", "float16"],
}
WARMUP_S = 8.0  # one stream through an utterance end before measuring: first forwards are slow
DRAIN_TIMEOUT_S = 20.0  # results still missing this long after the last audio: not real time


@dataclass
class StreamStats:
    partial_delays: list[float] = field(default_factory=list)
    final_delays: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunResult:
    config: str
    streams: int
    held: bool
    errors: int
    partial_p50: float | None
    partial_p95: float | None
    partial_p99: float | None
    final_p50: float | None
    final_p95: float | None
    chunks_per_s: float
    mean_batch_size: float
    online_busy: float  # share of the run the online lane spent in the engine
    final_busy: float
    cpu_percent: float
    rss_mb: float
    gpu_mb: float | None


# ---- one client -------------------------------------------------------------


async def stream_client(url: str, pcm: bytes, seconds: float, offset_s: float,
                        mode: str = "2pass") -> StreamStats:
    """Stream `pcm` (looped) for `seconds` at real-time pace; time partials and finals."""
    stats = StreamStats()
    await asyncio.sleep(offset_s)
    sent_at: list[float] = []  # sent_at[i]: when the frame ending at (i+1)*FRAME_S left
    try:
        async with CaptionClient.connect(url) as client:
            await client.start(mode=mode, wav_name="load")
            receiver = asyncio.create_task(_receive(client, sent_at, stats))
            await _send_realtime(client, pcm, seconds, sent_at)
            await client.end()
            await asyncio.wait_for(receiver, timeout=DRAIN_TIMEOUT_S)
    except (ServerError, OSError, TimeoutError) as exc:
        stats.error = str(exc)
    return stats


async def _send_realtime(client: CaptionClient, pcm: bytes, seconds: float,
                         sent_at: list[float]) -> None:
    frame = int(32000 * FRAME_S)
    start = time.monotonic()
    for index in range(int(seconds / FRAME_S)):
        position = (index * frame) % (len(pcm) - frame)
        await client.send_audio(pcm[position : position + frame])
        sent_at.append(time.monotonic())
        await asyncio.sleep(max(0.0, start + (index + 1) * FRAME_S - time.monotonic()))


async def _receive(client: CaptionClient, sent_at: list[float], stats: StreamStats) -> None:
    async for message in client.messages():
        now = time.monotonic()
        # the frame whose arrival completed the audio up to `end`
        frame = math.ceil(message.get("end", 0) / 1000 / FRAME_S - 1e-6) - 1
        if not 0 <= frame < len(sent_at):
            continue
        # endpoint results (after the VAD's trailing silence) count as finals; the
        # stream-end flush is left out: it comes without that wait
        endpoint = not message["is_final"] and (
            message["mode"] == "2pass-offline" or message.get("final", False))
        if message["mode"] in ("2pass-online", "online") and not message.get("final"):
            stats.partial_delays.append(now - sent_at[frame])
        elif endpoint:
            stats.final_delays.append(now - sent_at[frame])


# ---- the server under test -------------------------------------------------------


class ServerProcess:
    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.process: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, "-m", "server.cli", "serve", "--port", "0", *self.args]
        self.process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:
            if match := re.search(r"listening on ws://[\d.]+:(\d+)", line):
                self.port = int(match.group(1))
                break
        else:
            raise RuntimeError(f"captiond did not start: {' '.join(command)}")
        # keep draining its log so the pipe never blocks it
        threading.Thread(target=self.process.stderr.read, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()  # drains: open utterances are finalised first
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=10) as r:
            return json.loads(r.read())


def gpu_memory_mb(pid: int) -> float | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True, text=True,
    ).stdout
    used = [float(mem) for p, mem in (line.split(",") for line in out.splitlines() if line)
            if int(p) == pid]
    return sum(used) if used else 0.0


# ---- runs and sweeps ---------------------------------------------------------------


async def run_once(server: ServerProcess, config: str, streams: int, pcm: bytes,
                   seconds: float, mode: str = "2pass", client_procs: int = 1) -> RunResult:
    import psutil

    process = psutil.Process(server.process.pid)
    before = server.health()
    process.cpu_percent(None)
    started = time.monotonic()
    offsets = [random.uniform(0, 0.6) for _ in range(streams)]
    if client_procs <= 1 or streams < 2 * client_procs:
        stats = await run_clients(server.url, pcm, seconds, offsets, mode)
    else:  # one asyncio loop cannot pace hundreds of sockets: spread them over processes
        loop = asyncio.get_running_loop()
        shares = [offsets[i::client_procs] for i in range(client_procs)]
        with ProcessPoolExecutor(client_procs, mp_context=get_context("spawn")) as pool:
            parts = await asyncio.gather(*(
                loop.run_in_executor(pool, _client_process, server.url, pcm, seconds, share, mode)
                for share in shares))
        stats = [s for part in parts for s in part]
    elapsed = time.monotonic() - started
    after = server.health()
    return summarise(config, streams, stats, before, after, elapsed,
                     process.cpu_percent(None), process.memory_info().rss / 2**20,
                     gpu_memory_mb(server.process.pid))


async def run_clients(url: str, pcm: bytes, seconds: float, offsets: list[float],
                      mode: str) -> list[StreamStats]:
    return list(await asyncio.gather(
        *(stream_client(url, pcm, seconds, offset, mode) for offset in offsets)))


def _client_process(url: str, pcm: bytes, seconds: float, offsets: list[float],
                    mode: str) -> list[StreamStats]:
    return asyncio.run(run_clients(url, pcm, seconds, offsets, mode))


def summarise(config, streams, stats, before, after, elapsed, cpu, rss, gpu) -> RunResult:
    partials = [d for s in stats for d in s.partial_delays]
    finals = [d for s in stats for d in s.final_delays]
    errors = sum(s.error is not None for s in stats)
    batches = after["online_batches"] - before["online_batches"]
    jobs = after["online_chunks"] - before["online_chunks"]
    p95 = _pct(partials, 95)
    return RunResult(
        config=config, streams=streams,
        held=errors == 0 and p95 is not None and p95 <= HELD_P95_S,
        errors=errors,
        partial_p50=_pct(partials, 50), partial_p95=p95, partial_p99=_pct(partials, 99),
        final_p50=_pct(finals, 50), final_p95=_pct(finals, 95),
        chunks_per_s=round(jobs / elapsed, 2),
        mean_batch_size=round(jobs / batches, 2) if batches else 0.0,
        online_busy=round((after["online_busy_s"] - before["online_busy_s"]) / elapsed, 2),
        final_busy=round((after["final_busy_s"] - before["final_busy_s"]) / elapsed, 2),
        cpu_percent=round(cpu, 1), rss_mb=round(rss, 1), gpu_mb=gpu,
    )


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def sweep(config: str, server_args: list[str], counts: list[int], pcm: bytes,
                seconds: float, mode: str = "2pass", client_procs: int = 1) -> list[RunResult]:
    results = []
    with ServerProcess([*server_args, *CONFIGS[config]]) as server:
        await run_clients(server.url, pcm, WARMUP_S, [0.0], mode)  # not measured
        for streams in counts:
            result = await run_once(server, config, streams, pcm, seconds, mode, client_procs)
            print(_row(result), flush=True)
            results.append(result)
            if not result.held:
                break
    return results


def held_streams(results: list[RunResult]) -> int:
    return max((r.streams for r in results if r.held), default=0)


# ---- output ------------------------------------------------------------------------

HEADER = ("config", "N", "held", "err", "p50", "p95", "p99", "fin50", "fin95", "chunk/s",
          "batch", "onl.busy", "fin.busy", "cpu%", "rssMB", "gpuMB")


def _row(r: RunResult) -> str:
    cells = (r.config, r.streams, "yes" if r.held else "NO", r.errors, r.partial_p50,
             r.partial_p95, r.partial_p99, r.final_p50, r.final_p95, r.chunks_per_s,
             r.mean_batch_size, r.online_busy, r.final_busy, r.cpu_percent, r.rss_mb, r.gpu_mb)
    return " ".join(f"{'-' if c is None else c!s:>8}" for c in cells)


def machine() -> dict:
    import platform

    info = {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    if shutil.which("nvidia-smi"):
        info["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True).stdout.strip()
    return info


def ensure_models(model_dir: Path, size: str) -> Path:
    if not (model_dir / "paraformer-streaming" / "model.pt").exists():
        print(f"generating the {size} test models into {model_dir} …", flush=True)
        subprocess.run([sys.executable, "-m", "server.cli", "make-test-models", str(model_dir),
                        "--size", size], check=True, cwd=ROOT)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "bench" / "out" / "models-large")
    parser.add_argument("--size", default="large", choices=["tiny", "large"])
    parser.add_argument("--configs", default="batch1,batched,batched-int8")
    parser.add_argument("--counts", default="1,2,3,4,5,6,8,10,12,16,20,24,32,48,64")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--wav", type=Path, default=ROOT / "tests" / "data" / "multi.wav")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mode", default="2pass", choices=["2pass", "online"],
                        help="2pass: partials and finals (the default service); online: "
                             "partials only, which isolates the batched online pass")
    parser.add_argument("--client-procs", type=int, default=1,
                        help="spread the clients over this many processes (large N)")
    parser.add_argument("--threads", type=int, default=None, help="server --threads")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "load.json")
    args = parser.parse_args(argv)
    # `timeout` and Ctrl-C must not leave a server behind holding the machine
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    models = ensure_models(args.model_dir, args.size)
    server_args = [
        "--device", args.device, "--no-calibrate", "--no-admission",
        "--online-model", str(models / "paraformer-streaming"),
        "--offline-model", str(models / "paraformer-offline"),
        "--punc-model", str(models / "ct-punc"),
    ]
    if args.threads:
        server_args += ["--threads", str(args.threads)]
    samples, rate = soundfile.read(args.wav, dtype="int16")
    assert rate == 16000, "the load WAV must be 16 kHz mono"
    pcm = samples.astype("<i2").tobytes()
    counts = [int(c) for c in args.counts.split(",")]
    print(" ".join(f"{h:>8}" for h in HEADER), flush=True)
    results = {}
    for config in args.configs.split(","):
        results[config] = asyncio.run(sweep(config, server_args, counts, pcm, args.duration,
                                            args.mode, args.client_procs))
    summary = {config: held_streams(runs) for config, runs in results.items()}
    print("\nstreams held in real time (p95 partial delay <= 1 s):")
    for config, held in summary.items():
        ratio = f"  ({held / summary['batch1']:.1f}x batch1)" if summary.get("batch1") else ""
        print(f"  {config:>14}: {held}{ratio}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(
        {"machine": machine(), "mode": args.mode, "duration_s": args.duration,
         "summary": summary, "runs": {c: [asdict(r) for r in rs] for c, rs in results.items()}},
        indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
