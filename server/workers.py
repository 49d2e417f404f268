"""`captiond serve --workers N`: N front-end processes, one engine process.

This (main) process loads the engine and runs what must be one per device:
the batch runner with its scheduler, admission control and the rooms hub.
It spawns N front-end workers (server/frontend.py) that share the port and
do the per-frame work: WebSocket I/O, resampling, VAD, endpointing. Each
worker's jobs arrive over its link (server/engine_link.py) and are offered
to the one scheduler as `RemoteJob`s, so chunks of streams on different
workers run in the same batch. Engine states live here, per worker link,
keyed by the worker's `StreamHandle` ids.

Failure rules: a worker that dies is logged and a new one started in its
place (its clients lost their sockets; the others never notice). SIGTERM
drains every worker (finals delivered), then stops the runner.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
from dataclasses import replace
from typing import Any

import numpy as np

from server.app import CaptionServer, stop_signal
from server.config import ServerConfig
from server.engine_link import Link
from server.engine_thread import EngineThread
from server.logs import active_options
from server.remote import EngineFace
from server.store.linked import serve_store_call
from streaming.engine import ChunkRequest, ChunkResult, Engine, FinalRequest

log = logging.getLogger("captiond.workers")

FIGURES_INTERVAL_S = 0.5  # how often workers learn whole-server figures for /health
READY_TIMEOUT_S = 300.0  # a worker imports the engine's module (torch) before it listens


def default_workers(device: str, cores: int | None = None) -> int:
    """`--workers auto` (docs/workers.md). One front-end process costs well
    under a millisecond of CPU per 60 ms frame, about 1% of a core per
    stream: on the CPU the model (a third of a core per stream) saturates
    long before one front end does, and more processes only take cores from
    it. On a GPU the front end is the limit: half the cores go to front ends,
    the rest to the engine process (its loop, torch's host side) and the OS."""
    cores = cores or os.cpu_count() or 1
    if device != "cuda":
        return 1
    return max(1, cores // 2)


class WorkerStartError(RuntimeError):
    """A front-end worker could not start; `captiond serve` says so and exits."""


class WorkerChannel:
    """The engine process's end of one worker's link, and what it knows of it."""

    def __init__(self, index: int, link: Link) -> None:
        self.index = index
        self.link = link
        self.states: dict[int, Any] = {}  # StreamHandle id -> engine state
        self.connections = 0
        self.viewers = 0
        self.live = 0
        self.loop: dict[str, float | int] = {}  # the worker's LoopMonitor.health()


class RemoteJob:
    """A worker's job, shaped like a session with one job for the runner and
    scheduler (`ready_kinds/take_job/complete/fail`). The worker only forwards a
    job once its session allows it to run, so any forwarded job may run now."""

    def __init__(self, engine: Engine, channel: WorkerChannel, job_id: int, kind: str,
                 payload: tuple) -> None:
        self.engine = engine
        self.channel = channel
        self.job_id = job_id
        self.kind = kind
        # For /metrics' queue wait and delays: when the job reached this process
        # (the worker's clock is another process's; docs/operations.md).
        self.ready_at = asyncio.get_running_loop().time()
        self.handle_id: int | None = None
        if kind == "online":
            self.handle_id, self.options, samples, is_last = payload
            self.request = ChunkRequest(None, _float32(samples), is_last)
        else:
            samples, options = payload
            self.request = FinalRequest(_float32(samples), options)
        self._taken = False

    def ready_kinds(self) -> list[str]:
        return [] if self._taken else [self.kind]

    def take_job(self, kind: str | None = None) -> RemoteJob | None:
        if self._taken or self.channel.link.closed or kind not in (None, self.kind):
            return None  # taken already, or its worker is gone
        self._taken = True
        if self.kind == "online":  # the state is created on the utterance's first chunk
            state = self.channel.states.get(self.handle_id)
            if state is None and self.options is None:  # a bug, but not the runner's end
                log.error("worker %d: no state for stream %d", self.channel.index, self.handle_id)
                self.fail(self, "recognition failed on the server; see its log")
                return None
            if state is None:  # the first chunk carries the stream's options
                state = self.engine.new_stream(self.options)
            self.request = replace(self.request, state=state)
        return self

    def complete(self, job: RemoteJob, result: Any) -> None:
        if isinstance(result, ChunkResult):
            if self.request.is_last:
                self.channel.states.pop(self.handle_id, None)
            else:
                self.channel.states[self.handle_id] = result.state
            result = (result.committed, result.tentative)
        self.channel.link.send(("result", self.job_id, result))

    def fail(self, job: RemoteJob, message: str) -> None:
        self.channel.states.pop(self.handle_id, None)
        self.channel.link.send(("failed", self.job_id, message))


def _float32(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float32).copy()  # writable, as engines expect


class MultiWorkerServer:
    """The engine process: `start`, `serve_until_signalled`, `drain`, `stop`."""

    def __init__(self, config: ServerConfig, engine: Engine,
                 engine_thread: EngineThread | None = None) -> None:
        self.config = config
        self.engine = engine
        # Runner, scheduler, admission and health figures; it never listens.
        self.core = CaptionServer(config, engine, engine_thread)
        self.face = EngineFace.of(engine)
        self.channels: dict[int, WorkerChannel] = {}
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self.port = config.port
        self.draining = False
        self._ready: dict[int, asyncio.Future] = {}
        self._started = False
        self._tasks: set[asyncio.Task] = set()
        self._reservation: socket.socket | None = None
        self._directory = tempfile.mkdtemp(prefix="captiond-")  # mode 0700: this user only
        self._link_path = os.path.join(self._directory, "engine.sock")
        self._link_server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.core.rooms.bus is not None:
            self.core.rooms.bus.deliver = self._relay_room
        await self.core.rooms.open()  # the one transcript store, for every worker
        await self.core.start_backend()
        self._reserve_port()
        self._link_server = await asyncio.start_unix_server(self._on_worker, self._link_path)
        for index in range(self.config.workers):
            self._start_worker(index)
        try:
            await asyncio.wait_for(asyncio.gather(*self._ready.values()), READY_TIMEOUT_S)
        except (WorkerStartError, TimeoutError) as exc:
            await self.stop()
            for ready in self._ready.values():  # the others' errors: seen, reported once
                if ready.done() and not ready.cancelled():
                    ready.exception()
            raise WorkerStartError(str(exc) or "front-end workers did not start in time") from None
        self._started = True
        self._spawn(self._push_figures())
        log.info("captiond listening on ws://%s:%d with %d front-end workers (engine %s)",
                 self.config.host, self.port, self.config.workers, self.engine.name)

    @property
    def ready_workers(self) -> int:
        """Workers listening now (a replaced one counts once it listens)."""
        return sum(future.done() and future.exception() is None and self.processes[i].is_alive()
                   for i, future in self._ready.items())

    def _reserve_port(self) -> None:
        """Port 0: pick the port here, so every worker binds the same one."""
        if self.port != 0:
            return
        family, kind, _, _, address = socket.getaddrinfo(
            self.config.host, 0, type=socket.SOCK_STREAM)[0]
        self._reservation = socket.socket(family, kind)
        self._reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._reservation.bind(address)  # bound, never listening: gets no connections
        self.port = self._reservation.getsockname()[1]

    def _start_worker(self, index: int) -> None:
        from server.frontend import worker_main

        self._ready[index] = asyncio.get_running_loop().create_future()
        config = replace(self.config, port=self.port)
        process = multiprocessing.get_context("spawn").Process(
            target=worker_main, name=f"captiond-worker-{index}", daemon=True,
            args=(config, self.face, index, self._link_path, active_options()))
        process.start()
        self.processes[index] = process
        self._spawn(self._watch(index, process))

    async def _watch(self, index: int, process: multiprocessing.process.BaseProcess) -> None:
        await _exited(process)
        if self.draining:
            return
        ready = self._ready[index]
        if not ready.done():  # it never came up: a restart would fail the same way
            message = (f"front-end worker {index} exited with code {process.exitcode} while "
                       "starting; see its log above")
            ready.set_exception(WorkerStartError(message))
            if self._started:  # a replacement: serve on with the others
                log.error("%s; serving with one worker fewer", message)
                ready.exception()  # retrieved: nobody awaits a replacement
            return
        log.error("front-end worker %d exited with code %s; its clients were disconnected; "
                  "starting a new one", index, process.exitcode)
        self._start_worker(index)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_worker(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        channel: WorkerChannel | None = None

        def on_messages(messages: list[tuple]) -> None:
            nonlocal channel
            for kind, *fields in messages:
                if kind == "hello":
                    channel = WorkerChannel(fields[0], link)
                    self.channels[channel.index] = channel
                    link.send(("figures", self.figures()))
                else:
                    self._on_message(channel, kind, fields)

        link = Link(reader, writer, on_messages)
        await link.receive_forever()
        if channel is not None and self.channels.get(channel.index) is channel:
            del self.channels[channel.index]  # its engine states go with it
        await link.close()

    def _on_message(self, channel: WorkerChannel, kind: str, fields: list) -> None:
        if kind == "job":
            job = RemoteJob(self.engine, channel, *fields)
            self.core.runner.notify(job)
        elif kind == "release":
            channel.states.pop(fields[0], None)
        elif kind == "admit":
            request_id, live_here = fields
            elsewhere = sum(c.live for c in self.channels.values() if c is not channel)
            reason = self.core.refusal(live_here + elsewhere)
            if reason is None:
                channel.live = live_here + 1  # counted before its next report
            channel.link.send(("admitted", request_id, reason))
        elif kind == "store":
            self._spawn(serve_store_call(self.core.rooms.store, channel.link, *fields))
        elif kind == "publish":
            room, message, text, _ = fields
            if self.core.rooms.bus is not None:  # to every process; back via _relay_room
                self.core.rooms.bus.publish(room, text)
            else:
                self._relay_room(room, message, text)
        elif kind == "stats":
            channel.connections, channel.viewers, channel.live, channel.loop = fields
        elif kind == "ready" and not self._ready[channel.index].done():
            self._ready[channel.index].set_result(None)

    def _relay_room(self, room: str, message: dict, text: str) -> None:
        """A room message to every worker's viewers."""
        for channel in self.channels.values():
            channel.link.send(("room", room, message, text, False))

    def figures(self) -> dict:
        """`/health` of the whole server: the engine's figures, the workers' sums."""
        figures = self.core.health()
        channels = list(self.channels.values())
        figures.update(
            status="draining" if self.draining else "ok",
            workers=self.config.workers,
            connections=sum(c.connections for c in channels),
            viewers=sum(c.viewers for c in channels),
            live_streams=sum(c.live for c in channels),
            **worker_loop_figures([c.loop for c in channels]),
        )
        return figures

    async def _push_figures(self) -> None:
        while True:
            await asyncio.sleep(FIGURES_INTERVAL_S)
            figures = self.figures()
            engine_metrics = self.core.metrics.render_engine()  # for the workers' /metrics
            for channel in self.channels.values():
                channel.link.send(("figures", figures))
                channel.link.send(("metrics", engine_metrics))

    async def serve_until_signalled(self) -> None:
        await self.start()
        await stop_signal()
        log.info("signal received: draining every worker (up to %gs)",
                 self.config.drain_timeout_s)
        await self.drain()

    async def drain(self) -> None:
        """Every worker stops accepting and finishes its streams; then stop."""
        self.draining = True
        for channel in self.channels.values():
            channel.link.send(("drain",))
        await self._join_workers(self.config.drain_timeout_s + 10)
        await self.stop()

    async def _join_workers(self, timeout: float) -> None:
        processes = list(self.processes.values())
        if processes:
            await asyncio.wait([asyncio.ensure_future(_exited(p)) for p in processes],
                               timeout=timeout)
        for process in processes:
            if process.is_alive():
                log.warning("worker %s did not finish draining; terminating it", process.name)
                process.terminate()

    async def stop(self) -> None:
        self.draining = True
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
        if self.processes:
            await asyncio.wait([asyncio.ensure_future(_exited(p))
                                for p in self.processes.values()], timeout=10)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._link_server is not None:
            self._link_server.close()
        if self._reservation is not None:
            self._reservation.close()
        shutil.rmtree(self._directory, ignore_errors=True)
        await self.core.stop()


async def _exited(process: multiprocessing.process.BaseProcess) -> None:
    """Wait for a worker to exit without a thread: its sentinel fd turns
    readable when it does."""
    if process.is_alive():
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(process.sentinel, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(process.sentinel)
    process.join()


def worker_loop_figures(loops: list[dict]) -> dict:
    """The front-end workers' event loops, summed (the audio frames are theirs;
    the engine process's own loop figures stay under `loop_*` and `frames`)."""
    loops = [loop for loop in loops if loop]
    frames = sum(loop["frames"] for loop in loops)
    frame_s = sum(loop["frame_s"] for loop in loops)
    return {
        "worker_frames": frames,
        "worker_frame_s": round(frame_s, 6),
        "worker_frame_us": round(1e6 * frame_s / frames, 2) if frames else 0.0,
        "worker_loop_cpu_s": round(sum(loop["loop_cpu_s"] for loop in loops), 4),
        "worker_loop_busy_max": max((loop["loop_busy"] for loop in loops), default=0.0),
        "worker_loop_lag_ms_p95_max": max((loop["loop_lag_ms_p95"] for loop in loops),
                                          default=0.0),
    }
