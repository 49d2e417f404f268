"""Live audio frames handled as websockets parses them (server/direct_frames.py):
the same results as through recv(), frames never overtaking the text frames
sent before them, and a bug met on that path reported like any other (1011)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from server import connection as connection_module
from server.connection import CaptionConnection
from server.direct_frames import DirectFramesConnection
from streaming.engine import StreamOptions
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.test_streaming_contract import transcribe
from tests.streaming.engine_double import StrideCountingEngine

FRAME_BYTES = 1920  # 60 ms at 16 kHz, as FunASR's clients send


def counted_direct_frames(monkeypatch) -> list[int]:
    """Counts the frames handed straight to connections (one entry per frame)."""
    taken: list[int] = []
    handle = CaptionConnection._direct_audio

    def counting(self, frame: bytes) -> None:
        taken.append(len(frame))
        handle(self, frame)

    monkeypatch.setattr(CaptionConnection, "_direct_audio", counting)
    return taken


async def paced_transcript(server, pcm: bytes, mode: str) -> list[dict]:
    """A live client: one frame, then a turn of the loop, so the server waits in recv()."""
    async with connect(url(server)) as ws:
        await ws.send(json.dumps({"mode": mode, "wav_name": "paced"}))
        for i in range(0, len(pcm), FRAME_BYTES):
            await ws.send(pcm[i : i + FRAME_BYTES])
            await asyncio.sleep(0.002)
        await ws.send(json.dumps({"is_speaking": False}))
        messages = []
        async for raw in ws:
            messages.append(json.loads(raw))
            if messages[-1].get("is_final"):
                return messages
    raise AssertionError("closed before the stream's last message")


async def test_live_frames_taken_as_parsed_give_what_recv_gives(start_server, monkeypatch):
    pcm, _ = wav_pcm16("multi.wav")
    taken = counted_direct_frames(monkeypatch)
    direct = await paced_transcript(await start_server(StrideCountingEngine()), pcm, "2pass")
    frames = -(-len(pcm) // FRAME_BYTES)
    # Only frames that arrive while the config is being decided are queued.
    assert frames - 5 <= len(taken) <= frames
    monkeypatch.setattr(connection_module, "DirectFramesConnection", type(None))  # path off
    taken.clear()
    queued = await paced_transcript(await start_server(StrideCountingEngine()), pcm, "2pass")
    assert taken == []
    assert direct == queued
    assert [m["segment"] for m in direct if m["mode"] == "2pass-offline"] == [0, 1, 2]


async def test_text_frames_keep_their_place_among_audio_sent_in_one_write(
        start_server, monkeypatch):
    """Two streams on one connection, every frame of both in a single write: a
    config must reach the session before its audio, and each is_speaking:false
    after the audio before it, though the audio may be taken straight away."""
    first, _ = wav_pcm16("utt01.wav")
    second, _ = wav_pcm16("utt02.wav")
    taken = counted_direct_frames(monkeypatch)
    server = await start_server(StrideCountingEngine())
    async with connect(url(server)) as ws:
        # A live stream open first, so the connection waits in recv() with its
        # handler set when the burst arrives.
        await ws.send(json.dumps({"mode": "online", "wav_name": "warm"}))
        await ws.send(first[:FRAME_BYTES])
        await asyncio.sleep(0.2)
        burst = [first[FRAME_BYTES:], json.dumps({"is_speaking": False}),
                 json.dumps({"mode": "2pass", "wav_name": "b"}), second,
                 json.dumps({"is_speaking": False})]
        for message in burst:
            for i in range(0, len(message), FRAME_BYTES) if isinstance(message, bytes) else [0]:
                if isinstance(message, bytes):
                    ws.protocol.send_binary(message[i : i + FRAME_BYTES])
                else:
                    ws.protocol.send_text(message.encode())
        ws.send_data()  # every frame above in one write
        messages = []
        async for raw in ws:
            messages.append(json.loads(raw))
            if messages[-1].get("is_final") and messages[-1]["wav_name"] == "b":
                break
    assert not [m for m in messages if "error" in m]
    finals = [m for m in messages if m["mode"] == "2pass-offline"]
    # The double's final text is the utterance's sample count: all of utt02 reached stream b.
    reference = await transcribe(await start_server(StrideCountingEngine()), second,
                                 mode="2pass", wav_name="b")
    assert [m["text"] for m in finals] == [m["text"] for m in reference.finals]
    warm_end = [m for m in messages if m["wav_name"] == "warm" and m.get("final")]
    assert len(warm_end) == 1  # the first stream's utterance closed by its is_speaking:false
    assert taken  # the first frames of the burst were taken straight from the parser


class NewStreamFails(StrideCountingEngine):
    """A bug on the path a directly taken frame runs: a new utterance's state."""

    def new_stream(self, options: StreamOptions) -> dict:
        raise RuntimeError("injected bug in new_stream")


async def test_a_bug_met_by_a_directly_taken_frame_closes_with_1011_and_one_log_line(
        start_server, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    taken = counted_direct_frames(monkeypatch)
    server = await start_server(NewStreamFails())
    pcm, _ = wav_pcm16("multi.wav")
    messages = []
    async with connect(url(server)) as ws:
        await ws.send(json.dumps({"mode": "online", "wav_name": "bug"}))
        with contextlib.suppress(ConnectionClosed):  # the server closes mid-stream
            for i in range(0, 40 * FRAME_BYTES, FRAME_BYTES):  # speech starts within 2.4 s
                await ws.send(pcm[i : i + FRAME_BYTES])
                await asyncio.sleep(0.002)
        with contextlib.suppress(ConnectionClosed):
            while True:
                messages.append(json.loads(await ws.recv()))
    assert ws.close_code == 1011
    errors = [m for m in messages if "error" in m]
    assert [m["code"] for m in errors] == ["internal_error"]
    assert "injected" not in errors[0]["error"]
    assert taken  # the bug was met on the direct path, not in recv()'s
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and "injected bug" in failed[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]


async def test_frames_cut_anywhere_arrive_whole_and_in_order_on_both_paths():
    """Binary frames of every length encoding, text, pings, fragmented messages,
    written whole, cut after their header or cut at random: the handler and
    recv() together see exactly the messages sent, in order. Some payloads are
    themselves frames, so a parser that starts mid-frame takes the wrong one."""
    rng = random.Random(7)
    sent: list[str | bytes] = []
    frames: list[tuple[bytes, int]] = []  # (frame bytes, header length)

    def add(opcode: Opcode, data: bytes, fin: bool = True) -> None:
        frame = Frame(opcode, data, fin).serialize(mask=True, extensions=[])
        frames.append((frame, len(frame) - len(data)))

    def masked_frame(size: int) -> bytes:
        return Frame(Opcode.BINARY, rng.randbytes(size)).serialize(mask=True, extensions=[])

    for _ in range(400):
        kind = rng.choice(["binary"] * 6 + ["nested", "text", "ping", "fragmented"])
        size = rng.choice([0, 1, 125, 126, 127, 1920, 65535, 65536, 70000])
        data = masked_frame(rng.choice([5, 1920])) if kind == "nested" else rng.randbytes(size)
        if kind == "nested":
            frame = zero_masked(data)
            frames.append((frame, len(frame) - len(data)))
        elif kind == "binary":
            add(Opcode.BINARY, data)
        elif kind == "text":
            data = f"text {len(sent)}"
            add(Opcode.TEXT, data.encode())
        elif kind == "ping":
            add(Opcode.PING, b"p")
            continue
        else:
            add(Opcode.BINARY, data[:50], fin=False)
            add(Opcode.CONT, data[50:], fin=True)
        sent.append(data)

    received: list[str | bytes] = []
    unparsed: list[int] = []  # sizes of the frames cut here, not by websockets' parser

    async def handler(connection: CuttingWatched) -> None:
        def take(frame: bytes) -> None:
            if connection.cutting:
                unparsed.append(len(frame))
            received.append(frame)

        while len(received) < len(sent):
            connection.binary_handler = take
            try:
                message = await connection.recv()
            finally:
                connection.binary_handler = None
            received.append(message)

    async with serve(handler, "127.0.0.1", 0, create_connection=CuttingWatched,
                     compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            pending = b""  # random cuts carry the rest of a frame into the next write
            for frame, header in frames:
                how = rng.choice(["whole", "whole", "after header", "random"])
                if how == "random":
                    pending += frame
                    cut = rng.randrange(len(pending) + 1)
                    writes, pending = [pending[:cut]], pending[cut:]
                elif how == "after header":
                    writes, pending = [pending + frame[:header], frame[header:]], b""
                else:
                    writes, pending = [pending + frame], b""
                for piece in writes:
                    if piece:
                        ws.transport.write(piece)
                        await asyncio.sleep(0.001)  # each write its own read, mostly
            ws.transport.write(pending)
            for _ in range(2000):
                if len(received) >= len(sent):
                    break
                await asyncio.sleep(0.01)
    assert received == sent
    # Cut here: plain binary frames of each length encoding (64-bit lengths go to websockets).
    assert {0, 1, 125, 126, 127, 1920, 65535} <= set(unparsed)
    assert max(unparsed) < 65536


async def test_a_frame_whose_header_came_alone_is_left_to_websockets():
    """The payload that follows a header read on its own is no frame start,
    even when its bytes look like one (here: a whole masked binary frame)."""
    inner = [Frame(Opcode.BINARY, bytes([i]) * 1920).serialize(mask=True, extensions=[])
             for i in range(10)]
    outer = [zero_masked(payload) for payload in inner]
    received: list[bytes] = []

    async def handler(connection: DirectFramesConnection) -> None:
        while len(received) < len(outer):
            connection.binary_handler = received.append
            try:
                received.append(await connection.recv())
            finally:
                connection.binary_handler = None

    async with serve(handler, "127.0.0.1", 0, create_connection=DirectFramesConnection,
                     compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            for frame in outer:
                ws.transport.write(frame[:8])  # 2 + 2 (length 1928) + 4 (mask)
                await asyncio.sleep(0.02)  # read on its own
                ws.transport.write(frame[8:])
                await asyncio.sleep(0.02)
            for _ in range(500):
                if len(received) >= len(outer):
                    break
                await asyncio.sleep(0.01)
    assert received == inner


def zero_masked(payload: bytes) -> bytes:
    """A binary frame whose all-zero mask leaves the payload's bytes as they are
    on the wire (here: the bytes of another frame)."""
    length = (bytes([0x80 | len(payload)]) if len(payload) < 126
              else bytes([0x80 | 126]) + len(payload).to_bytes(2, "big"))
    return bytes([0x82]) + length + bytes(4) + payload


class CuttingWatched(DirectFramesConnection):
    """Tells whether a frame handed over was cut by this module's own parser."""

    cutting = False

    def _take_binary_frames(self, data: bytes) -> int:
        self.cutting = True
        try:
            return super()._take_binary_frames(data)
        finally:
            self.cutting = False
