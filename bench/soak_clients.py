"""The clients of `bench/soak.py`: speakers that come and go, and room viewers
that stay, each writing down what it sent or received.

A speaker connects, streams clips of the speech fixtures at real-time pace
(each clip followed by a silence long enough to end its utterance), and ends
each stream one of three ways: `is_speaking: false` (it then reads its own
finals), an abrupt drop of the socket mid-clip or between clips, or a close
frame mid-clip. Then it may start another stream on the same connection, or
reconnect after a pause. Some streams upload a whole encoded file instead.
Every stream records the clips it started (their place in stream time), so
that `bench/soak.py` can check utterance by utterance what reached the rooms.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

RATE = 16000
FRAME_MS = 100
GAP_MS = 1200  # silence after each clip: more than the server's 700 ms end of utterance
LEAD_MS = 300  # silence before the first clip of a stream


@dataclass
class SentStream:
    """One stream as its speaker saw it."""

    wav_name: str
    room: str
    kind: str  # "live" (PCM, 2pass) or "upload" (an encoded file, offline)
    clips_ms: list[tuple[int, int]] = field(default_factory=list)  # clips started, stream time
    ending: str = ""  # "end", "drop" (socket torn down), "close" (close frame)
    direct_finals: list[dict] | None = None  # what it received itself, if it waited
    error: str | None = None  # the server's error code, if it refused or failed the stream


@dataclass
class Plan:
    """What the speakers do; `bench/soak.py` fills it from the command line."""

    url: str
    rooms: int
    deadline: float  # time.monotonic() after which speakers end what they do and stop
    clips: list[bytes]  # PCM16 at RATE
    upload: bytes  # an encoded file (one utterance) for the upload streams
    drop_share: float = 0.3  # streams that end abruptly (drop or close frame)
    upload_share: float = 0.1


@dataclass
class SpeakerLog:
    streams: list[SentStream] = field(default_factory=list)
    connects: int = 0
    connect_failures: int = 0


async def speaker(index: int, plan: Plan, log: SpeakerLog, rng: random.Random) -> None:
    """Streams until the deadline, reconnecting after every dropped connection."""
    while time.monotonic() < plan.deadline:
        try:
            ws = await connect(plan.url, max_size=None, open_timeout=30)
        except (OSError, TimeoutError, InvalidHandshake):
            log.connect_failures += 1
            await asyncio.sleep(1.0)
            continue
        log.connects += 1
        ending = "end"
        while time.monotonic() < plan.deadline and ending == "end":
            stream = SentStream(f"soak-{index}-{len(log.streams)}",
                                f"soak-room-{index % plan.rooms}",
                                "upload" if rng.random() < plan.upload_share else "live")
            log.streams.append(stream)
            await _one_stream(ws, stream, plan, rng)
            ending = stream.ending if stream.error is None else "refused"
            if rng.random() < 0.5:
                break  # reconnect even after a clean end, now and then
        if ending == "drop":
            ws.transport.abort()  # the network went away: no close frame
        else:
            await _close(ws)
        await asyncio.sleep(rng.uniform(0.0, 2.0))


async def _one_stream(ws: ClientConnection, stream: SentStream, plan: Plan,
                      rng: random.Random) -> None:
    """One stream on an open connection; its `ending` says how it ended."""
    config = {"mode": "2pass" if stream.kind == "live" else "offline",
              "wav_name": stream.wav_name, "room": stream.room, "speaker": stream.wav_name,
              "wav_format": "pcm" if stream.kind == "live" else "mp3"}
    planned = "end"
    if stream.kind == "live" and rng.random() < plan.drop_share:
        planned = rng.choice(["drop", "drop", "close"])
    try:
        await ws.send(json.dumps(config))
        if stream.kind == "upload":
            stream.clips_ms.append((0, 0))  # one utterance; its times are the decoder's
            for i in range(0, len(plan.upload), 8192):
                await ws.send(plan.upload[i : i + 8192])
        elif not await _speak(ws, stream, plan, rng, planned):
            stream.ending = planned
            return
        stream.ending = "end"
        await ws.send('{"is_speaking": false}')
        stream.direct_finals = await _read_finals(ws, stream)
    except ConnectionClosed:
        stream.ending = "closed by server"
        await _read_finals(ws, stream)  # what arrived before the close: its error, if any


async def _speak(ws: ClientConnection, stream: SentStream, plan: Plan, rng: random.Random,
                 ending: str) -> bool:
    """Send clips and gaps at real-time pace; False if the stream was cut off
    here as planned (mid-clip, or after a gap)."""
    clips = rng.randint(1, 4)
    cut_clip = rng.randrange(clips) if ending != "end" else None
    cut_mid = rng.random() < 0.7
    pacer = _Pacer()
    position = await pacer.send(ws, np.zeros(LEAD_MS * RATE // 1000, "<i2").tobytes())
    for n in range(clips):
        if n > 0 and time.monotonic() > plan.deadline:
            break
        clip = rng.choice(plan.clips)
        stream.clips_ms.append((position, position + len(clip) * 1000 // (2 * RATE)))
        if n == cut_clip and cut_mid:  # cut well inside the speech: an utterance is open
            cut = int(len(clip) * rng.uniform(0.4, 0.8)) // 2 * 2
            await pacer.send(ws, clip[:cut])
            return False
        position = await pacer.send(ws, clip)
        position = await pacer.send(ws, np.zeros(GAP_MS * RATE // 1000, "<i2").tobytes())
        if n == cut_clip:
            return False
    return True


class _Pacer:
    """Sends PCM in FRAME_MS frames on an absolute clock (no drift); returns the
    stream position in ms after each call."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.sent_ms = 0

    async def send(self, ws: ClientConnection, pcm: bytes) -> int:
        frame = FRAME_MS * RATE * 2 // 1000
        for i in range(0, len(pcm), frame):
            piece = pcm[i : i + frame]
            await ws.send(piece)
            self.sent_ms += len(piece) * 1000 // (2 * RATE)
            delay = self.started + self.sent_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return self.sent_ms


async def _read_finals(ws: ClientConnection, stream: SentStream) -> list[dict]:
    """The stream's finals up to its last message; its error if the server sent one."""
    finals = []
    try:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if "error" in message:
                stream.error = message.get("code", "error")
                return finals
            if message.get("mode") in ("2pass-offline", "offline") and "segment" in message:
                finals.append(message)
            if message.get("is_final"):
                return finals
    except (ConnectionClosed, TimeoutError):
        stream.error = stream.error or "closed before its last message"
        return finals


async def _close(ws: ClientConnection) -> None:
    try:
        await asyncio.wait_for(ws.close(), 10)
    except (TimeoutError, ConnectionClosed):
        ws.transport.abort()


class RoomViewer:
    """Watches one room for the whole soak; keeps every live (not history) final."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.finals: list[dict] = []
        self.reconnects = 0
        self._task: asyncio.Task | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch())
        await asyncio.wait_for(self._connected.wait(), 30)

    async def _watch(self) -> None:
        async with connect(self.url, max_size=None) as ws:
            self._connected.set()
            async for raw in ws:
                message = json.loads(raw)
                if message.get("history"):
                    continue
                if message.get("mode") in ("2pass-offline", "offline") and "segment" in message:
                    self.finals.append(message)

    async def stop(self) -> None:
        if self._task.done():
            self._task.result()  # a viewer that died early is a finding: raise it
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
