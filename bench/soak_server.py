"""The server side of `bench/soak.py`: a `captiond serve` process whose log is
kept and whose memory, descriptors and threads are sampled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
from websockets.sync.client import connect

from bench.load_server import ROOT

WARM_UP = ROOT / "tests" / "data"
# server/cli.py's format: "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+): (.*)$")


class SampledServer:
    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.samples: list[dict] = []
        self.port = 0
        self._started = 0.0

    def __enter__(self) -> SampledServer:
        self._log = tempfile.NamedTemporaryFile("w+", prefix="captiond-soak-", suffix=".log")
        # the transcript store in a scratch file, not the user's data directory
        self._scratch = tempfile.TemporaryDirectory(prefix="captiond-soak-")
        self.store_path = Path(self._scratch.name) / "transcripts.sqlite3"
        store = ["--store", str(self.store_path)]
        command = [sys.executable, "-m", "server.cli", "serve", "--port", "0", *store,
                   *self.args]
        self.process = subprocess.Popen(command, cwd=ROOT, stderr=self._log)
        self._started = time.monotonic()
        while not (match := re.search(r"listening on ws://[\d.]+:(\d+)", self.log_text())):
            if self.process.poll() is not None or time.monotonic() - self._started > 300:
                raise RuntimeError(f"captiond did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)
        self.port = int(match.group(1))
        self.psutil = psutil.Process(self.process.pid)
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()  # drains
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        self._scratch.cleanup()

    def stored_finals(self) -> dict[str, list[dict]]:
        """Room → the finals in the server's store (its own message, id included),
        read beside the running server (SQLite WAL: readers do not block it)."""
        import sqlite3

        found: dict[str, list[dict]] = {}
        with contextlib.closing(sqlite3.connect(f"file:{self.store_path}?mode=ro",
                                                uri=True)) as db:
            for room, message in db.execute("SELECT room, message FROM finals ORDER BY room, id"):
                found.setdefault(room, []).append(json.loads(message))
        return found

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=30) as r:
            return json.loads(r.read())

    # ---- warm-up and idleness ----------------------------------------------------

    def warm_up(self) -> None:
        """One live stream and one upload, so lazy imports and first-use
        allocations happen before the baseline sample."""
        pcm = (WARM_UP / "utt02.wav").read_bytes()[44:]
        for config, data in (({"mode": "2pass"}, pcm),
                             ({"mode": "offline", "wav_format": "mp3"},
                              (WARM_UP / "utt01.mp3").read_bytes())):
            with connect(self.url + "/", max_size=None) as ws:
                ws.send(json.dumps(config))
                for i in range(0, len(data), 8192):
                    ws.send(data[i : i + 8192])
                ws.send('{"is_speaking": false}')
                while not json.loads(ws.recv(timeout=120)).get("is_final"):
                    pass
        asyncio.run(self.wait_idle())
        self._sample("before")

    async def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Until no connection and no live stream is left (queued finals done)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            health = await asyncio.to_thread(self.health)
            if not health["connections"] and not health["live_streams"]:
                return
            await asyncio.sleep(0.5)

    # ---- sampling ----------------------------------------------------------------

    async def sample_every(self, interval_s: float) -> None:
        while True:
            await self.sample_once("load")
            await asyncio.sleep(interval_s)

    async def sample_once(self, label: str) -> None:
        health = await asyncio.to_thread(self.health)
        self._sample(label, health)

    def _sample(self, label: str, health: dict | None = None) -> None:
        health = health or self.health()
        with self.psutil.oneshot():
            self.samples.append({
                "t": round(time.monotonic() - self._started, 1), "label": label,
                "rss_mb": round(self.psutil.memory_info().rss / 2**20, 1),
                # the final-pass process (server/final_process.py) and any others
                "children_rss_mb": round(sum(_rss(child) for child
                                             in self.psutil.children(recursive=True)) / 2**20, 1),
                "fds": self.psutil.num_fds(), "threads": self.psutil.num_threads(),
                "connections": health["connections"], "viewers": health["viewers"],
            })

    def growth(self) -> dict:
        """First and last figures; RSS growth from idle before to idle after,
        and its slope under load (first fifth of the load left out: warming)."""
        before = next(s for s in self.samples if s["label"] == "before")
        after = self.samples[-1]
        load = [s for s in self.samples if s["label"] == "load"] or [after]
        settled = load[len(load) // 5:]
        return {
            "rss_mb_warm": before["rss_mb"], "rss_mb_loaded": load[-1]["rss_mb"],
            "rss_mb_after": after["rss_mb"],
            "children_rss_mb_warm": before.get("children_rss_mb"),
            "children_rss_mb_after": after.get("children_rss_mb"),
            "rss_growth_mb": round(after["rss_mb"] - before["rss_mb"], 1),
            "rss_load_slope_mb_per_h": _slope_per_hour(settled, "rss_mb"),
            "fds_idle_before": before["fds"], "fds_idle_after": after["fds"],
            "fds_peak": max(s["fds"] for s in self.samples),
            "threads_idle_before": before["threads"], "threads_idle_after": after["threads"],
        }

    def log_counts(self) -> dict:
        """Warnings and errors of the server's log, by logger and first words."""
        lines = self.log_text().splitlines()
        kinds = Counter()
        for line in lines:
            if match := LOG_LINE.match(line):
                level, logger, message = match.groups()
                if level in ("WARNING", "ERROR", "CRITICAL"):
                    kinds[f"{level} {logger}: {' '.join(message.split()[:3])}"] += 1
        return {
            "warnings": sum(" WARNING " in line for line in lines),
            "errors": sum(" ERROR " in line for line in lines),
            "tracebacks": sum(line.startswith("Traceback") for line in lines),
            "by_kind": dict(kinds),
            "first_problems": [line for line in lines
                               if " ERROR " in line or line.startswith("Traceback")][:10],
        }


def _slope_per_hour(samples: list[dict], key: str) -> float | None:
    if len(samples) < 3:
        return None
    ts = [s["t"] for s in samples]
    ys = [s[key] for s in samples]
    mean_t, mean_y = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return None
    slope = sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys)) / var
    return round(slope * 3600, 1)


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:  # it exited between the listing and the reading
        return 0
