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


def online_lane_threads(threads: int | None, workers: int, device: str,
                        cores: int | None = None) -> int | None:
    """`--threads`, or when unset on the CPU a count of our own rather than
    torch's default (None), so that the runner can lend cores to a running final
    pass (runner.py). That count is all the cores, unless front-end worker
    processes (`--workers N`, N ≥ 2) run beside the engine: they each take about
    a core under load, so the lane gets the cores they leave, at least one.
    Measured on 2 cores, tiny model, `--workers 2`: one torch thread instead of
    two took a sixth less of the server's CPU at 320 streams and halved the p95
    partial delay at 384 (bench/RESULTS.md, "Torch threads"). OMP_NUM_THREADS
    in the environment is the user's choice and stays torch's default."""
    if threads is not None or device != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return threads
    cores = cores or _usable_cores()
    return max(1, cores - workers) if workers >= 2 else cores


def _usable_cores() -> int:
    """The CPUs this process may run on, as OpenMP counts them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def final_lane_threads(online_threads: int | None) -> int:
    """Threads for final passes: half the online lane's (default: all cores)."""
    return max(1, (online_threads or _usable_cores()) // 2)


def _set_torch_threads(threads: int) -> None:
    import torch  # OpenMP's thread count is per calling thread: set it on the lane itself

    # torch gives a thread, when it first asks for its count, whatever count any
    # thread set last (the final lane's, say): ask first, so that ours stays.
    torch.get_num_threads()
    torch.set_num_threads(threads)


class EngineThread:
    def __init__(self, threads: int | None = None, name: str = "captiond-engine") -> None:
        """`threads`: torch's CPU threads on this thread (None: torch's default, all cores)."""
        self.threads = threads
        self._applied = threads  # the count last set on the thread (calls may change it)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        if threads:
            self._executor.submit(_set_torch_threads, threads)

    def call(self, fn: Callable[..., T], *args) -> T:
        """Run `fn` on the engine thread and wait for it (startup, before the loop runs)."""
        return self._executor.submit(fn, *args).result()

    async def run(self, fn: Callable[..., T], *args, threads: int | None = None) -> T:
        """Run `fn` on the engine thread without blocking the event loop;
        `threads`: torch's thread count for this call and later ones."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._with_threads, threads, fn, *args)

    def _with_threads(self, threads: int | None, fn: Callable[..., T], *args) -> T:
        if threads and threads != self._applied:
            _set_torch_threads(threads)
            self._applied = threads
        return fn(*args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
