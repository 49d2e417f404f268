"""What one asyncio front-end process costs per audio frame, and what the
worker ↔ engine channel costs per job (docs/workers.md).

    PYTHONPATH=. python bench/frontend_cost.py [--frames 2000] [--streams 20]

1. session: `CaptionSession` driven directly (decode, resample, VAD,
   endpointing, job bookkeeping, events), with a model that costs nothing.
2. live: the same server, and 200 clients in two processes sending real
   speech at a live pace, one 60 ms frame every 60 ms (each frame then
   arrives on its own, as from microphones): server CPU per frame.
   socket: a real server process (same null model) and clients in this
   process sending 60 ms frames over WebSockets; the server's CPU time
   (from /proc) divided by the frames it took: receive + session + notify +
   sending partials. The same for a websockets server that only receives,
   with and without an `asyncio.timeout` around each recv, from 200 clients
   at real-time pace (a recv that waits is what makes the timeout cost).
3. channel: one online job (600 ms of float32 audio) through
   `engine_link.encode_frame`/`decode_body` (pickle 5) and through a
   hand-written struct encoding, and a real Unix-socket trip in batches.

Numbers are CPU time per frame or job; on a loaded machine read them as
rough. Prints a table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from server.engine_link import decode_body, encode_frame
from streaming.engine import (
    ChunkRequest,
    ChunkResult,
    FinalRequest,
    FinalResult,
    StreamOptions,
)
from streaming.session import CaptionSession, SessionLimits

ROOT = Path(__file__).resolve().parents[1]
FRAME_MS = 60  # FunASR's clients send one frame every 60 ms (chunk_interval 10)
RATE = 16000
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2  # one frame of PCM16


class NullEngine:
    """Costs nothing: the front end alone is measured."""

    name = "null"

    def chunk_samples(self, options: StreamOptions) -> int:
        return options.chunk_size[1] * 960

    def new_stream(self, options: StreamOptions) -> dict:
        return {}

    def step(self, batch: Sequence[ChunkRequest]) -> list[ChunkResult]:
        return [ChunkResult(r.state, ("x",), ("y",)) for r in batch]

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        return [FinalResult("x.") for _ in batch]

    def render(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)


def speech_like_pcm(seconds: float) -> bytes:
    """Tone bursts with pauses: the VAD finds utterances, the endpointer ends them."""
    t = np.arange(int(seconds * RATE)) / RATE
    on = (t % 4.0) < 2.5
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) * on + 0.01 * np.random.default_rng(0).normal(
        size=t.size)
    return (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()


def session_cost(frames: int) -> float:
    """µs of CPU per 60 ms frame through CaptionSession alone."""
    pcm = speech_like_pcm(frames * FRAME_MS / 1000)
    engine = NullEngine()
    session = CaptionSession(engine, now=0.0)
    session.receive_text(json.dumps({"mode": "2pass", "wav_name": "b"}), 0.0)
    start = time.process_time()
    for i in range(frames):
        session.receive_audio(pcm[i * FRAME_BYTES:(i + 1) * FRAME_BYTES], i * FRAME_MS / 1000)
        while (job := session.take_job()) is not None:
            run = engine.step if job.kind == "online" else engine.finalize
            session.complete(job, run([job.request])[0])
        session.events()
    return (time.process_time() - start) / frames * 1e6


def _serve(port_queue) -> None:
    import torch  # noqa: F401 - the engine thread imports it at start: not while measured

    from server.app import CaptionServer
    from server.config import ServerConfig
    from server.limits import ConnectionLimits
    from streaming.admission import AdmissionPolicy

    async def main() -> None:
        # The clients send as fast as they can, on purpose: no real-time pace limit.
        unpaced = SessionLimits(max_audio_ahead_s=float("inf"))
        server = CaptionServer(ServerConfig(
            port=0, calibrate=False, limits=unpaced,
            admission=AdmissionPolicy(enabled=False),  # every client of this one address
            connection_limits=ConnectionLimits(max_connections_per_address=None),
        ), NullEngine())
        await server.start()
        port_queue.put(server.port)
        await asyncio.Event().wait()

    from server.cli import run_loop  # uvloop where installed, as `captiond serve`

    run_loop(main())


def _serve_bare(port_queue, per_recv_timeout: bool) -> None:
    """websockets alone: receive every frame and do nothing with it, with or
    without an asyncio.timeout around each recv (the server had one until
    the idle timeout became one timer per idle period)."""
    from websockets.asyncio.server import serve

    async def handler(websocket) -> None:
        while True:
            try:
                if per_recv_timeout:
                    async with asyncio.timeout(120):
                        await websocket.recv()
                else:
                    await websocket.recv()
            except Exception:  # noqa: BLE001 - the client went away: this one is done
                return

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port_queue.put(server.sockets[0].getsockname()[1])
            await asyncio.Event().wait()

    from server.cli import run_loop

    run_loop(main())


async def _bare_client(port: int, pcm: bytes, frames: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/", compression=None) as websocket:
        for i in range(frames):  # at a live client's pace: each recv waits for its frame
            await websocket.send(pcm[i * FRAME_BYTES:(i + 1) * FRAME_BYTES])
            await asyncio.sleep(FRAME_MS / 1000)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(port: int, pcm: bytes, frames: int) -> None:
    from clients.client import CaptionClient

    async with CaptionClient.connect(f"ws://127.0.0.1:{port}/") as client:
        await client.start(mode="2pass")
        for i in range(frames):
            await client.send_audio(pcm[i * FRAME_BYTES:(i + 1) * FRAME_BYTES])
            if i % 10 == 9:
                await asyncio.sleep(0)
        await client.end()
        await client.collect()


async def _live_client(port: int, pcm: bytes, frames: int, index: int) -> None:
    """A live FunASR-like client: real speech, one 60 ms frame every 60 ms,
    replies read as they come."""
    from websockets.asyncio.client import connect

    count = len(pcm) // FRAME_BYTES
    async with connect(f"ws://127.0.0.1:{port}/", compression=None) as websocket:
        await websocket.send(json.dumps({"mode": "online", "wav_name": f"s{index}"}))
        reader = asyncio.create_task(_read_all(websocket))
        await asyncio.sleep(FRAME_MS / 1000 * (index % 100) / 100)  # spread over the frame
        for i in range(frames):
            at = (index * 37 + i) % count * FRAME_BYTES
            await websocket.send(pcm[at : at + FRAME_BYTES])
            await asyncio.sleep(FRAME_MS / 1000)
        reader.cancel()


async def _read_all(websocket) -> None:
    async for _ in websocket:
        pass


def _live_clients(port: int, streams: int, frames: int, first: int) -> None:
    import soundfile

    from server.cli import run_loop

    pcm = soundfile.read(ROOT / "tests" / "data" / "multi.wav", dtype="int16")[0].tobytes()

    async def run() -> None:
        await asyncio.gather(*(_live_client(port, pcm, frames, first + k) for k in range(streams)))

    run_loop(run())


SPAWN = multiprocessing.get_context("spawn")  # no forked torch state in servers or clients


def _start_server(target, *args) -> tuple[multiprocessing.Process, int]:
    """`target(port_queue, *args)` in a process of its own; it and its port."""
    queue = SPAWN.Queue()
    server = SPAWN.Process(target=target, args=(queue, *args), daemon=True)
    server.start()
    return server, queue.get(timeout=120)


def live_cost(frames: int, streams: int) -> float:
    """µs of server CPU per 60 ms frame with live clients: captiond's front end
    (null model) and `streams` clients in two processes at real-time pace, each
    frame read on its own as from a live microphone."""
    server, port = _start_server(_serve)
    _live_clients(port, 5, 20, 10_000)  # warm up
    before = _cpu_s(server.pid)
    clients = [SPAWN.Process(target=_live_clients, args=(port, streams // 2, frames, k * 1000))
               for k in range(2)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    used = _cpu_s(server.pid) - before
    server.terminate()
    return used / (2 * (streams // 2) * frames) * 1e6


def socket_cost(frames: int, streams: int, bare: bool | None = None) -> float:
    """µs of server CPU per 60 ms frame over real WebSockets: captiond's
    server, or (`bare` given) websockets alone, with a timeout per recv if True."""
    server, port = _start_server(_serve) if bare is None else _start_server(_serve_bare, bare)
    pcm = speech_like_pcm(frames * FRAME_MS / 1000)
    client = _client if bare is None else _bare_client

    async def run() -> None:
        await asyncio.gather(*(client(port, pcm, frames) for _ in range(streams)))

    asyncio.run(client(port, pcm, 20))  # warm up
    before = _cpu_s(server.pid)
    asyncio.run(run())
    used = _cpu_s(server.pid) - before
    server.terminate()
    return used / (frames * streams) * 1e6


def _struct_encode(job_id: int, handle: int, samples: np.ndarray, last: bool) -> bytes:
    return struct.pack("!IIB", job_id, handle, last) + samples.tobytes()


def _struct_decode(data: bytes) -> tuple:
    job_id, handle, last = struct.unpack_from("!IIB", data)
    return job_id, handle, np.frombuffer(data, np.float32, offset=9), bool(last)


def channel_cost(jobs: int) -> dict[str, float]:
    samples = np.random.default_rng(0).normal(0, 0.1, 9600).astype(np.float32)
    figures = {}
    for name, audio in (("array", samples), ("bytes", samples.tobytes())):
        message = ("job", 1, "online", (7, None, audio, False))
        start = time.process_time()
        for _ in range(jobs):
            decode_body(encode_frame([message])[4:])
        figures[f"pickle_{name}_us_per_job"] = (time.process_time() - start) / jobs * 1e6
    start = time.process_time()
    for _ in range(jobs):
        _struct_decode(_struct_encode(1, 7, samples, False))
    figures["struct_us_per_job"] = (time.process_time() - start) / jobs * 1e6
    for batch in (1, 32):
        figures[f"socket_us_per_job_batch{batch}"] = asyncio.run(
            _socket_trip(samples, jobs, batch))
    return figures


async def _socket_trip(samples: np.ndarray, jobs: int, batch: int) -> float:
    """Both ends in this process: CPU of write + read + (de)serialise per job."""
    import socket

    left, right = socket.socketpair()
    # keep both pairs: a StreamWriter closes its socket when collected
    _, writer = await asyncio.open_unix_connection(sock=left)
    reader, right_writer = await asyncio.open_unix_connection(sock=right)
    start = time.process_time()
    received = 0
    for _ in range(jobs // batch):
        # distinct messages: pickle would store a repeated one only once
        messages = [("job", i, "online", (7, None, samples.tobytes(), False))
                    for i in range(batch)]
        writer.write(encode_frame(messages))
        size = int.from_bytes(await reader.readexactly(4), "big")
        received += len(decode_body(await reader.readexactly(size)))
    used = time.process_time() - start
    writer.close()
    right_writer.close()
    return used / received * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="60 ms frames per stream")
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--live-only", action="store_true",
                        help="only the live-clients figure (the one to compare code by)")
    args = parser.parse_args()
    # 200 live streams, 150 frames each (9 s): real speech, paced
    figures = {"live_us_per_frame": live_cost(150, 200)}
    if not args.live_only:
        figures = {"session_us_per_frame": session_cost(args.frames),
                   "socket_us_per_frame": socket_cost(args.frames, args.streams),
                   **figures,
                   # 200 paced streams, 150 frames each (9 s)
                   "websockets_alone_us_per_frame": socket_cost(150, 200, False),
                   "websockets_timeout_per_recv_us_per_frame": socket_cost(150, 200, True),
                   **channel_cost(2000)}
    for name, value in figures.items():
        print(f"{name:32s} {value:10.1f}")
    if not args.live_only:
        frames_per_s = 1e6 / figures["socket_us_per_frame"]
        print(f"one front-end process: ~{frames_per_s:.0f} frames/s "
              f"= ~{frames_per_s * FRAME_MS / 1000:.0f} live streams at one core")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
