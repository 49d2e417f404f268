"""The client side of `bench/load.py`: one process paces many real-time streams.

Shaped so that a few processes can hold thousands of streams (issue 9):

- the WAV is cut into frames once per process; every stream sends the same
  `bytes` objects, each from its own starting frame (so utterance ends, and
  the final passes they trigger, do not line up across streams);
- one frame clock per process: a single timer callback per frame period
  writes that tick's frame to every active stream through websockets'
  sans-I/O protocol (`send_binary` + `send_data`: no await, no task, no
  per-stream sleep). Frames queue in the socket buffer if the server stops
  reading, so one slow socket never delays the other streams' audio;
- per stream only a bare websockets connection, a few numbers and one
  receive task that times the server's messages against the tick times.

The parent (`bench/load.py`) starts the processes, waits until every one has
connected its streams, then sends a common start time; streams join the clock
at random ticks within `ramp_s`. Partial delays are counted only for frames
sent in the steady window [go + ramp_s, go + duration_s], when all N streams
are live; the parent reads the server's counters over the same window.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import random
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.protocol import State

SAMPLE_RATE = 16000
CONNECT_BATCH = 50  # concurrent handshakes per process: stays inside the listen backlog
PARTIAL_MODES = ("online", "2pass-online")
FINAL_MODES = ("offline", "2pass-offline")
REFUSED = "overloaded"  # the error code of an admission refusal (close 1013)


@dataclass
class ClientPlan:
    """What one client process does; picklable, sent by the parent."""

    url: str
    pcm: bytes  # mono PCM16 at 16 kHz
    streams: int
    frame_ms: int = 60
    duration_s: float = 20.0  # audio per stream
    ramp_s: float = 3.0  # streams join at random ticks within this
    phase_s: float = 0.0  # this process's clock offset inside a frame period
    mode: str = "2pass"
    seed: int = 0
    drain_timeout_s: float = 20.0  # is_final later than this after the end: an error
    first_index: int = 0  # names the streams load-<index> across processes
    connect_delay_s: float = 0.0  # processes connect one after another: the listen backlog


@dataclass
class ClientReport:
    """What one client process measured; the parent merges these."""

    streams: int
    connected: int = 0
    partial_delays: list[float] = field(default_factory=list)
    final_delays: list[float] = field(default_factory=list)
    end_lags: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    refusals: int = 0
    connect_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time over the steady window
    window_s: float = 0.0
    frames_sent: int = 0
    tick_late_ms_p95: float = 0.0
    tick_late_ms_max: float = 0.0
    write_backlog_max: int = 0  # bytes queued in one socket: the server stopped reading


class Stream:
    __slots__ = ("index", "ws", "start_tick", "offset", "end_sent", "done", "error", "receiver")

    def __init__(self, index: int, ws: ClientConnection, start_tick: int, offset: int) -> None:
        self.index = index
        self.ws = ws
        self.start_tick = start_tick  # the clock tick that sends its first frame
        self.offset = offset  # its first frame in the WAV
        self.end_sent: float | None = None
        self.done = False
        self.error: str | None = None
        self.receiver: asyncio.Task | None = None


def client_process(plan: ClientPlan, parent: Connection) -> None:
    """Process entry point: connect, report ready, wait for the start time, run, report."""
    try:
        import uvloop
    except ImportError:  # no uvloop build (Windows): the stock loop, slower
        report = asyncio.run(_main(plan, parent))
    else:
        report = uvloop.run(_main(plan, parent))
    parent.send(report)
    parent.close()


async def _main(plan: ClientPlan, parent: Connection) -> ClientReport:
    loop = asyncio.get_running_loop()
    report = ClientReport(plan.streams)
    rng = random.Random(plan.seed)
    frame_bytes = 2 * SAMPLE_RATE * plan.frame_ms // 1000
    frames = [plan.pcm[i : i + frame_bytes]
              for i in range(0, len(plan.pcm) - frame_bytes + 1, frame_bytes)]
    await asyncio.sleep(plan.connect_delay_s)
    started = time.monotonic()
    sockets = await _connect_all(plan, report)
    report.connect_s = time.monotonic() - started
    period = plan.frame_ms / 1000
    ramp_ticks = max(1, round(plan.ramp_s / period))
    streams = [Stream(plan.first_index + i, ws, rng.randrange(ramp_ticks),
                      rng.randrange(len(frames)))
               for i, ws in enumerate(sockets)]
    report.connected = len(streams)
    # what exists now lives for the whole run: keep the collector from rescanning it
    gc.collect()
    gc.freeze()
    parent.send(("ready", len(streams)))
    go_at = await loop.run_in_executor(None, parent.recv)
    clock = FrameClock(plan, frames, streams, go_at + plan.phase_s, report)
    for stream in streams:
        stream.receiver = asyncio.create_task(_receive(stream, clock, report))
    await clock.run(go_at)
    await _finish(streams, plan, report)
    return report


async def _finish(streams: list[Stream], plan: ClientPlan, report: ClientReport) -> None:
    """Wait for every stream's is_final (up to the drain timeout), count what
    failed, close the sockets."""
    if not streams:
        return
    await asyncio.wait([s.receiver for s in streams], timeout=plan.drain_timeout_s)
    for stream in streams:
        if not stream.done and stream.error is None:
            stream.error = "no is_final in time"
        stream.receiver.cancel()
        if stream.error is not None:
            report.errors[stream.error] = report.errors.get(stream.error, 0) + 1
    await asyncio.wait([asyncio.create_task(s.ws.close()) for s in streams], timeout=10)


async def _connect_all(plan: ClientPlan, report: ClientReport) -> list[ClientConnection]:
    config = {"mode": plan.mode, "is_speaking": True, "wav_format": "pcm",
              "chunk_size": [5, 10, 5], "chunk_interval": 10, "audio_fs": SAMPLE_RATE}
    sockets: list[ClientConnection] = []
    for first in range(0, plan.streams, CONNECT_BATCH):
        batch = range(first, min(plan.streams, first + CONNECT_BATCH))
        results = await asyncio.gather(
            *(_connect_one(plan.url, {**config, "wav_name": f"load-{plan.first_index + i}"})
              for i in batch), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                kind = f"connect: {type(result).__name__}"
                report.errors[kind] = report.errors.get(kind, 0) + 1
            else:
                sockets.append(result)
    return sockets


async def _connect_one(url: str, config: dict) -> ClientConnection:
    # No compression (the server has none) and no client pings: bare sockets.
    ws = await connect(url, subprotocols=["binary"], compression=None, ping_interval=None,
                       open_timeout=60, close_timeout=5, max_size=None)
    await ws.send(json.dumps(config))
    return ws


class FrameClock:
    """One timer for all of a process's streams; tick i fires at t0 + i * period."""

    def __init__(self, plan: ClientPlan, frames: list[bytes], streams: list[Stream],
                 t0: float, report: ClientReport) -> None:
        self.period = plan.frame_ms / 1000
        self.frames = frames
        self.frames_per_stream = max(1, round(plan.duration_s / self.period))
        self.t0 = t0
        self.tick_times: list[float] = []  # when tick i's frames were written
        self.report = report
        self._waiting = sorted(streams, key=lambda s: s.start_tick, reverse=True)
        self._active: list[Stream] = []
        self._lateness: list[float] = []
        self._finished = asyncio.get_running_loop().create_future()
        self.window = (0.0, 0.0)
        self._plan = plan

    async def run(self, go_at: float) -> None:
        loop = asyncio.get_running_loop()
        self.window = (go_at + self._plan.ramp_s, go_at + self._plan.duration_s)
        cpu: list[float] = []
        for at in self.window:  # this process's own cost over the parent's window
            loop.call_at(_loop_time(loop, at), lambda: cpu.append(time.process_time()))
        loop.call_at(_loop_time(loop, self.t0), self._tick)
        await self._finished
        if len(cpu) == 2:
            self.report.cpu_s = cpu[1] - cpu[0]
            self.report.window_s = self.window[1] - self.window[0]
        late = sorted(self._lateness)
        if late:
            self.report.tick_late_ms_p95 = round(1000 * late[int(0.95 * (len(late) - 1))], 2)
            self.report.tick_late_ms_max = round(1000 * late[-1], 2)

    def sent_at(self, stream: Stream, end_ms: float) -> float | None:
        """When the frame that completed the audio up to `end_ms` left, if it has."""
        frame = math.ceil(end_ms / self._plan.frame_ms - 1e-6) - 1
        tick = stream.start_tick + frame
        return self.tick_times[tick] if 0 <= frame and tick < len(self.tick_times) else None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        tick = len(self.tick_times)
        now = time.monotonic()
        self._lateness.append(max(0.0, now - (self.t0 + tick * self.period)))
        self.tick_times.append(now)
        while self._waiting and self._waiting[-1].start_tick <= tick:
            self._active.append(self._waiting.pop())
        still = []
        for stream in self._active:
            index = tick - stream.start_tick
            if index < self.frames_per_stream:
                frame = self.frames[(stream.offset + index) % len(self.frames)]
                if self._write(stream, frame, binary=True):
                    still.append(stream)
            else:  # docs/design.md §4: is_speaking=false ends the stream; is_final answers it
                stream.end_sent = now
                self._write(stream, '{"is_speaking": false}', binary=False)
        self._active = still
        if self._active or self._waiting:
            loop.call_at(_loop_time(loop, self.t0 + (tick + 1) * self.period), self._tick)
        elif not self._finished.done():
            self._finished.set_result(None)

    def _write(self, stream: Stream, data: bytes | str, binary: bool) -> bool:
        ws = stream.ws
        if stream.error is not None or ws.protocol.state is not State.OPEN:
            stream.error = stream.error or "closed by the server"
            return False
        if binary:
            ws.protocol.send_binary(data)
            self.report.frames_sent += 1
        else:
            ws.protocol.send_text(data.encode())
        ws.send_data()
        backlog = ws.transport.get_write_buffer_size()
        if backlog > self.report.write_backlog_max:
            self.report.write_backlog_max = backlog
        return True


def _loop_time(loop: asyncio.AbstractEventLoop, monotonic_at: float) -> float:
    # loop.time() is monotonic-based but uvloop's is cached per iteration in ms
    return loop.time() + (monotonic_at - time.monotonic())


async def _receive(stream: Stream, clock: FrameClock, report: ClientReport) -> None:
    try:
        async for raw in stream.ws:
            now = time.monotonic()
            message = json.loads(raw)
            if "error" in message:
                stream.error = f"server: {message.get('code', 'error')}"
                report.refusals += message.get("code") == REFUSED
                return
            if message.get("is_final"):
                if stream.end_sent is not None:
                    report.end_lags.append(now - stream.end_sent)
                stream.done = True
                return
            _time_result(stream, clock, report, message, now)
    except ConnectionClosed:
        pass
    except (InvalidStatus, InvalidURI, OSError) as exc:
        stream.error = f"receive: {type(exc).__name__}"
    if not stream.done and stream.error is None:
        stream.error = "closed by the server"


def _time_result(stream: Stream, clock: FrameClock, report: ClientReport, message: dict,
                 now: float) -> None:
    mode = message.get("mode")
    # the partial that closes an utterance waits for the endpoint silence: a final, not a partial
    closes = bool(message.get("final"))
    if mode in PARTIAL_MODES and not closes:
        sent = clock.sent_at(stream, message.get("end", 0))
        if sent is not None and clock.window[0] <= sent <= clock.window[1]:
            report.partial_delays.append(now - sent)
    elif mode in FINAL_MODES or closes:
        sent = clock.sent_at(stream, message.get("end", 0))
        if sent is not None and clock.window[0] <= sent <= clock.window[1]:
            report.final_delays.append(now - sent)
