"""Live audio frames handled as websockets parses them (server/direct_frames.py):
the same results as through recv(), frames never overtaking the text frames
sent before them, and a bug met on that path reported like any other (1011)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server import connection as connection_module
from server.connection import CaptionConnection
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
