"""Where the event loop's time goes, for `/health` and `bench/load.py`.

Every connection's frames, every result and every health request run on the
one event-loop thread, so under load that thread can fall behind real time
while the engine lanes still have room. Three figures show it:

- busy share: CPU time of the loop thread over wall time, sampled every
  `interval_s` (`loop_busy`, the last interval) and cumulative
  (`loop_cpu_s`, which a load generator differences over its own window);
- lag: how late a periodic wakeup fires, the wait any ready callback had
  (`loop_lag_ms_p95`, `loop_lag_ms_max` over the last `window` samples);
- per-frame front-end cost: time the connections spent handling each audio
  frame (session front end + scheduler offer), as a count and cumulative
  seconds (`frames`, `frame_s`) and their mean (`frame_us`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

SAMPLE_S = 0.5
WINDOW = 120  # lag samples kept: the last minute at the default interval


class FrameMeter:
    """Cumulative cost of handling audio frames; written on the loop thread only."""

    __slots__ = ("frames", "seconds")

    def __init__(self) -> None:
        self.frames = 0
        self.seconds = 0.0

    def record(self, seconds: float) -> None:
        self.frames += 1
        self.seconds += seconds

    @property
    def mean_us(self) -> float:
        return 1e6 * self.seconds / self.frames if self.frames else 0.0


class LoopMonitor:
    def __init__(self, interval_s: float = SAMPLE_S, window: int = WINDOW) -> None:
        self.interval_s = interval_s
        self.frames = FrameMeter()
        self.busy = 0.0  # share of the last interval the loop thread ran
        self.samples = 0
        self._lags: deque[float] = deque(maxlen=window)
        self._cpu_clock: Callable[[], float] = time.thread_time
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start sampling; call on the event loop's thread."""
        self._cpu_clock = _thread_cpu_clock()
        self._task = asyncio.create_task(self._sample(), name="captiond-loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        wall, cpu = time.monotonic(), self._cpu_clock()
        while True:
            due = time.monotonic() + self.interval_s
            await asyncio.sleep(self.interval_s)
            now, spent = time.monotonic(), self._cpu_clock()
            self._lags.append(max(0.0, now - due))
            self.busy = min(1.0, (spent - cpu) / (now - wall)) if now > wall else 0.0
            self.samples += 1
            wall, cpu = now, spent

    def health(self) -> dict[str, float | int]:
        lags = sorted(self._lags)
        p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else 0.0
        return {
            "loop_busy": round(self.busy, 3),
            "loop_cpu_s": round(self._cpu_clock(), 4),
            "loop_lag_ms_p95": round(1000 * p95, 2),
            "loop_lag_ms_max": round(1000 * lags[-1], 2) if lags else 0.0,
            "frames": self.frames.frames,
            "frame_s": round(self.frames.seconds, 6),
            "frame_us": round(self.frames.mean_us, 2),
        }


def _thread_cpu_clock() -> Callable[[], float]:
    """CPU time of the calling thread, readable later from any thread: /health
    runs on the loop today, but a reader elsewhere must not time itself."""
    getclockid = getattr(time, "pthread_getcpuclockid", None)
    if getclockid is None:  # no per-thread clock ids (Windows): only the loop reads it
        return time.thread_time
    clock = getclockid(threading.get_ident())
    return lambda: time.clock_gettime(clock)
