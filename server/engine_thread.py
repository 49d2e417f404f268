"""Threads that run the models: one loads them and runs the online pass (and
calibration); a second, the final lane, runs final passes beside it.

Why the loading thread also runs the online pass: torch's CPU thread pool
(OpenMP) belongs to the thread that calls into it. Measured on the 2-core dev
machine with the large model, a streaming step ran at 0.24–0.31 s per chunk
on the thread that had loaded the model and at 0.39–0.64 s on another thread.

Why the final lane gets half the cores: the runner has two lanes, online
chunks and final passes (runner.py). Measured with one live stream of the
large model on 2 cores: a chunk took 0.25–0.32 s on the online lane (2
threads) while no final ran and 0.42–0.52 s beside a final on a 1-thread
lane; the stream kept real time (partials within 0.54 s).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def final_lane_threads(online_threads: int | None) -> int:
    """Threads for final passes: half the online lane's (default: all cores)."""
    return max(1, (online_threads or os.cpu_count() or 2) // 2)


def _set_torch_threads(threads: int) -> None:
    import torch  # OpenMP's thread count is per calling thread: set it on the lane itself

    torch.set_num_threads(threads)


class EngineThread:
    def __init__(self, threads: int | None = None, name: str = "captiond-engine") -> None:
        """`threads`: torch's CPU threads on this thread (None: torch's default, all cores)."""
        self.threads = threads
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        if threads:
            self._executor.submit(_set_torch_threads, threads)

    def call(self, fn: Callable[..., T], *args) -> T:
        """Run `fn` on the engine thread and wait for it (startup, before the loop runs)."""
        return self._executor.submit(fn, *args).result()

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Run `fn` on the engine thread without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
