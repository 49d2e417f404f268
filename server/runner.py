"""The one task that drives batched inference (docs/design.md §6).

It asks the pure `BatchScheduler` what is due, runs that batch on the engine
in a dedicated thread (the event loop never blocks on the model), hands each
result back to its session and wakes the session's connection. Online chunks
and final passes each have their own thread ("lane"), so a batch of each can
run at once; the scheduler is asked only for kinds whose lane is free. When
nothing is due it sleeps until the scheduler's deadline or until new work
arrives — it never polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from server.engine_faults import (
    FAILED_MESSAGE,
    STALL_MESSAGE,
    JobFailed,
    infer_isolating,
    within_watchdog,
)
from server.engine_thread import EngineThread, final_lane_threads
from server.metrics import ServerMetrics
from streaming.admission import AdmissionController
from streaming.engine import SAMPLE_RATE, ChunkRequest, Engine, StreamOptions
from streaming.scheduler import BatchPolicy, BatchScheduler
from streaming.session import CaptionSession, Job

log = logging.getLogger("captiond.runner")

STALL_S = 60.0  # an engine call this long is stuck: its streams are told (1011)


@dataclass
class RunnerStats:
    batches: int = 0
    jobs: int = 0
    online_batches: int = 0
    online_chunks: int = 0
    failures: int = 0
    stalls: int = 0  # engine calls the watchdog gave up on (engine_faults.py)
    online_busy_s: float = 0.0  # time each lane spent inside the engine
    final_busy_s: float = 0.0
    final_batches: int = 0
    finals: int = 0
    # Summed over finals: from ready (queued by its session here, or arrived from a
    # front-end worker) to its batch's start. With the final lane mostly idle and
    # finals late, this says whether they wait in this process.
    final_wait_s: float = 0.0

    def record(self, kind: str, size: int) -> None:
        self.batches += 1
        self.jobs += size
        if kind == "online":
            self.online_batches += 1
            self.online_chunks += size
        else:
            self.final_batches += 1
            self.finals += size

    @property
    def mean_online_batch(self) -> float:
        return self.online_chunks / self.online_batches if self.online_batches else 0.0


class InferenceRunner:
    def __init__(
        self, engine: Engine, policy: BatchPolicy | None, admission: AdmissionController | None,
        engine_thread: EngineThread,
    ) -> None:
        self.engine = engine
        self.scheduler = BatchScheduler(policy)
        self.admission = admission
        self.stats = RunnerStats()
        self.metrics: ServerMetrics | None = None  # the server's /metrics, when it has one
        self._listeners: dict[CaptionSession, Callable[[], None]] = {}
        self._wake = asyncio.Event()
        self.engine_thread = engine_thread  # loaded the models; runs the online lane
        # One lane per job kind, each on its own thread: a final pass (the
        # offline model over a whole utterance, ~1 s on a CPU) runs beside the
        # online chunks instead of holding every stream's partials behind it,
        # as FunASR's C++ 2pass server does with its separate offline decoder.
        final_threads = final_lane_threads(self.engine_thread.threads)
        self._lanes = {"online": self.engine_thread,
                       "final": EngineThread(final_threads, name="captiond-final")}
        # While a final pass runs (in its process or on its thread), an online
        # step takes only the cores the final lane leaves: threads of both on
        # one core make each OpenMP barrier wait for a thread that is not
        # running (docs/workers.md, "Torch threads"). Only with a known count.
        online = self.engine_thread.threads
        self._online_beside_final = max(1, online - final_threads) if online else None
        self._busy: set[str] = set()
        self._batches: set[asyncio.Task] = set()
        self.stall_s: float | None = STALL_S  # the engine watchdog (engine_faults.py)

    def attach(self, session: CaptionSession, on_events: Callable[[], None]) -> None:
        self._listeners[session] = on_events

    def detach(self, session: CaptionSession) -> None:
        # Its queued jobs still run: a disconnected speaker's last utterance is
        # finalised all the same (docs/design.md §8).
        self._listeners.pop(session, None)

    def notify(self, session: CaptionSession, now: float | None = None) -> None:
        """The session may have new work: offer it to the scheduler, once per
        kind it may start (a chunk may pass a final waiting for its lane)."""
        kinds = session.ready_kinds()
        if kinds:
            now = asyncio.get_running_loop().time() if now is None else now
            for kind in kinds:
                self.scheduler.offer(session, str(kind), now)
            self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                free = [kind for kind in self._lanes if kind not in self._busy]
                due = self.scheduler.next_batch(loop.time(), free) if free else None
                if due is None:
                    await self._sleep_until(self.scheduler.deadline(free) if free else None)
                    continue
                kind, offered = due
                taken = [(session, session.take_job(kind)) for session in offered]
                sessions = [session for session, job in taken if job is not None]
                if sessions:
                    jobs = [job for _, job in taken if job is not None]
                    self._fill(kind, sessions, jobs)
                    self._busy.add(kind)
                    batch = asyncio.create_task(self._run_batch(kind, sessions, jobs))
                    self._batches.add(batch)
                    batch.add_done_callback(lambda task, kind=kind: self._lane_free(task, kind))
        finally:
            for batch in self._batches:
                batch.cancel()

    def _fill(self, kind: str, sessions: list, jobs: list[Job]) -> None:
        """Top the batch up with more jobs of its sessions, round robin: an
        offline stream's finals may run together (jobs.may_start), so a few long
        files fill the final pass. A session's jobs stay in their order."""
        room = self.scheduler.policy.max_batch_size - len(jobs)
        candidates = list(dict.fromkeys(sessions))
        while room > 0 and candidates:
            for session in list(candidates):
                job = session.take_job(kind) if room > 0 else None
                if job is None:
                    candidates.remove(session)
                    continue
                sessions.append(session)
                jobs.append(job)
                room -= 1

    def _lane_free(self, task: asyncio.Task, kind: str) -> None:
        self._batches.discard(task)
        self._busy.discard(kind)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            # engine errors are handled in _run_batch; this is a bug in delivery
            log.error("delivering a %s batch failed", kind, exc_info=task.exception())

    async def _sleep_until(self, deadline: float | None) -> None:
        now = asyncio.get_running_loop().time()
        timeout = None if deadline is None else max(0.0, deadline - now)
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _run_batch(self, kind: str, sessions: list, jobs: list[Job]) -> None:
        threads = None
        if kind == "online" and self._online_beside_final:
            final_running = "final" in self._busy
            threads = self._online_beside_final if final_running else self.engine_thread.threads
        call = asyncio.ensure_future(
            self._lanes[kind].run(self._timed_infer, kind, jobs, threads=threads))
        if not await within_watchdog(call, self.stall_s):  # engine_faults.py
            log.error("the engine's %s step of %d has run %g s: failing its streams",
                      kind, len(jobs), self.stall_s)
            self.stats.stalls += 1
            for session, job in zip(sessions, jobs):
                session.fail(job, STALL_MESSAGE)
            self._wake_all(sessions)
            await asyncio.gather(call, return_exceptions=True)  # the lane is busy till then
            return
        try:
            results, start, end = call.result()
        except Exception:
            log.exception("engine failed on a %s batch of %d", kind, len(jobs))
            results, start, end = [JobFailed(None)] * len(jobs), 0.0, 0.0
        else:
            self._record(kind, jobs, start, end)
        for session, job, result in zip(sessions, jobs, results):
            if isinstance(result, JobFailed):
                self.stats.failures += 1
                if self.metrics is not None:
                    self.metrics.engine_failures.labels(kind).inc()
                session.fail(job, FAILED_MESSAGE)
            else:
                session.complete(job, result)
        self._wake_all(sessions)

    def _wake_all(self, sessions: list) -> None:
        for session in dict.fromkeys(sessions):  # once each, though it had several jobs
            self.notify(session)
            listener = self._listeners.get(session)
            if listener is not None:
                listener()

    def _timed_infer(self, kind: str, jobs: list[Job]) -> tuple[list, float, float]:
        # monotonic: the same clock as the event loop's time(), which admission reads
        start = time.monotonic()
        results = infer_isolating(self._infer, kind, jobs)  # one bad job fails alone
        return results, start, time.monotonic()

    def _record(self, kind: str, jobs: list[Job], start: float, end: float) -> None:
        """Account a finished batch, on the loop: the lanes only return timings."""
        log.debug("%s batch of %d took %.0f ms", kind, len(jobs), 1000 * (end - start))
        self.stats.record(kind, len(jobs))
        if self.metrics is not None:
            self.metrics.batch_done(kind, (getattr(job, "ready_at", None) for job in jobs),
                                    len(jobs), start, end, asyncio.get_running_loop().time())
        if kind != "online":
            self.stats.final_busy_s += end - start
            self.stats.final_wait_s += sum(max(0.0, start - job.ready_at) for job in jobs
                                           if getattr(job, "ready_at", None) is not None)
            return
        self.stats.online_busy_s += end - start
        if self.admission is not None:
            # The online lane is what must keep real time; finals slow it
            # down, which its timings show.
            audio_s = max(len(job.request.samples) for job in jobs) / SAMPLE_RATE
            self.admission.record_batch(len(jobs), start, end, audio_s)

    def calibrate(self, batch_sizes: tuple[int, ...], chunks: int = 5) -> list[tuple]:
        """Measure steady-state batches before serving, so admission control
        knows the capacity from the first stream on. Blocking: call at startup
        on the engine thread; returns (batch size, seconds, audio seconds) for
        `record_calibration` to apply on the loop."""
        options = StreamOptions()
        stride = self.engine.chunk_samples(options)
        noise = np.random.default_rng(0).normal(0, 0.01, stride).astype(np.float32)
        measured = []
        for size in batch_sizes:
            states = [self.engine.new_stream(options) for _ in range(size)]
            for index in range(chunks):
                start = time.monotonic()
                results = self.engine.step([ChunkRequest(s, noise, False) for s in states])
                elapsed = time.monotonic() - start
                states = [result.state for result in results]
                if index >= chunks // 2:  # look-back is full
                    measured.append((size, elapsed, stride / SAMPLE_RATE))
            log.info("calibration: batch %d takes %.0f ms per %.0f ms chunk", size,
                     1000 * elapsed, 1000 * stride / SAMPLE_RATE)
        return measured

    def record_calibration(self, measured: list[tuple]) -> None:
        if self.admission is not None:
            for size, elapsed, audio_s in measured:
                self.admission.model.record(size, elapsed, audio_s)

    def _infer(self, kind: str, jobs: list[Job]) -> list:
        if kind == "online":
            return self.engine.step([job.request for job in jobs])
        return self.engine.finalize([job.request for job in jobs])

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.close()
