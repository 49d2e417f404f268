"""The server side of `bench/load.py`: the captiond process under test and
what it reports over a measurement window.

`ServerProcess` starts `captiond serve` (or the `bench/load_sink.py`
stand-in) on a free port and stops it (SIGTERM: captiond drains). `Snapshot`
reads `/health` and the process's CPU time at the two ends of a run's steady
window; `window_metrics` turns two of them into the "where time goes" figures
of one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


SERVE = ["-m", "server.cli", "serve", "--port", "0"]
SINK = ["-m", "bench.load_sink", "--port", "0"]  # no model: measures the clients alone


class ServerProcess:
    def __init__(self, args: list[str], program: list[str] = SERVE) -> None:
        self.args = args
        self.program = program
        self.process: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, *self.program, *self.args]
        self.process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:
            if match := re.search(r"listening on ws://[\d.]+:(\d+)", line):
                self.port = int(match.group(1))
                break
        else:
            raise RuntimeError(f"captiond did not start: {' '.join(command)}")
        # keep draining its log so the pipe never blocks it
        self._log_reader = threading.Thread(target=self.process.stderr.read, daemon=True)
        self._log_reader.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()  # drains: open utterances are finalised first
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_reader.join(timeout=5)
        self.process.stderr.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=30) as r:
            return json.loads(r.read())


def wait_idle(server: ServerProcess, timeout_s: float = 120.0) -> float:
    """Wait until the last run's connections are gone (their queued finals
    done) so that no backlog leaks into the next run; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        health = server.health()
        if not health.get("connections") and not health.get("live_streams"):
            break
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


@dataclass
class Snapshot:
    at: float  # time.monotonic()
    health: dict
    cpu_s: float  # the server process's user + system CPU time
    tree_cpu_s: float  # the same plus its live children's (workers, final-pass process)
    steal_s: float | None = None  # the whole machine's: time the hypervisor ran others

    @classmethod
    def take(cls, server: ServerProcess) -> Snapshot:
        import psutil

        process = psutil.Process(server.process.pid)
        own = _cpu_s(process)
        children = 0.0
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a child may exit meanwhile
                children += _cpu_s(child)
        return cls(time.monotonic(), server.health(), own, own + children, machine_steal_s())


def machine_steal_s() -> float | None:
    """CPU time, over all cores, that a virtual machine's host gave to others
    (psutil's `steal`; None where the OS does not report it). On a shared host
    it moves a run's figures as much as a code change does (bench/RESULTS.md)."""
    import psutil

    return getattr(psutil.cpu_times(), "steal", None)


def _cpu_s(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def window_metrics(first: Snapshot, last: Snapshot) -> dict:
    """Server figures over [first, last]: engine lanes' and event loop's busy
    share, per-frame front-end cost, throughput, process CPU."""
    wall = last.at - first.at
    a, b = first.health, last.health

    def delta(key: str) -> float:
        return b.get(key, 0) - a.get(key, 0)

    # with --workers N the audio frames are the workers': their loops, summed
    workers = "worker_frames" in b
    frames = delta("worker_frames" if workers else "frames")
    frame_s = delta("worker_frame_s" if workers else "frame_s")
    batches = delta("online_batches")
    finals = delta("finals")
    return {
        "window_s": round(wall, 2),
        "online_busy": round(delta("online_busy_s") / wall, 3),
        "final_busy": round(delta("final_busy_s") / wall, 3),
        "loop_busy": round(delta("loop_cpu_s") / wall, 3),  # the engine process's with workers
        "loop_lag_ms_p95": b.get("loop_lag_ms_p95"),  # the server's last minute
        "loop_lag_ms_max": b.get("loop_lag_ms_max"),
        "worker_loops_busy": round(delta("worker_loop_cpu_s") / wall, 3) if workers else None,
        "worker_loop_lag_ms_p95_max": b.get("worker_loop_lag_ms_p95_max"),
        "frame_us": round(1e6 * frame_s / frames, 2) if frames else None,
        "frames_per_s": round(frames / wall, 1),
        "chunks_per_s": round(delta("online_chunks") / wall, 2),
        "mean_batch": round(delta("online_chunks") / batches, 2) if batches else 0.0,
        # finals: batch size, and the mean wait from ready to its batch's start
        "final_mean_batch": round(finals / delta("final_batches"), 2) if finals else None,
        "final_wait_ms": round(1000 * delta("final_wait_s") / finals, 1) if finals else None,
        "server_cpu_pct": round(100 * (last.cpu_s - first.cpu_s) / wall, 1),
        # all server processes; a child that started or ended inside the window skews it
        "server_tree_cpu_pct": round(100 * (last.tree_cpu_s - first.tree_cpu_s) / wall, 1),
        # % of one core the host took from this machine over the window (all cores summed)
        "steal_pct": (None if first.steal_s is None or last.steal_s is None
                      else round(100 * (last.steal_s - first.steal_s) / wall, 1)),
    }


def rss_mb(server: ServerProcess) -> float:
    import psutil

    return round(psutil.Process(server.process.pid).memory_info().rss / 2**20, 1)


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


def machine(device: str) -> dict:
    info = {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "websockets": _version("websockets"),
        "device": device,
        "gpu": None,
    }
    if shutil.which("nvidia-smi"):
        info["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
             "--format=csv,noheader"], capture_output=True, text=True).stdout.strip() or None
    return info


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
