"""Faults injected into a real server over real sockets (docs/design.md §8):
the engine raising on one stream's chunk, an engine step that stalls past the
watchdog, a client that stops reading, a speaker vanishing mid-utterance, and
a bug inside a connection handler. Each time, the stream at fault ends with a
clear error and close code, and nothing owed to anyone else is lost."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

from websockets.asyncio.client import connect

from clients.client import CaptionClient, ServerError
from server import connection as connection_module
from server.app import CaptionServer
from server.config import ServerConfig
from streaming.engine import ChunkResult
from streaming.scheduler import BatchPolicy
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.fault_engine import RAISE_MARK, STALL_MARK, FaultInjectingEngine, marked
from tests.server.test_rooms import is_final, started_viewer
from tests.server.test_streaming_contract import send_frames, transcribe
from tests.streaming.engine_double import StrideCountingEngine


def segments(messages: list[dict]) -> list[int]:
    return [m["segment"] for m in messages if is_final(m)]


async def frames(data: bytes, size: int = 3200):
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


async def refused_stream(server, pcm: bytes, **config) -> ServerError:
    """Stream `pcm` while reading replies; the error the server ended it with."""
    async with CaptionClient.connect(url(server)) as client:
        try:
            await client.stream(frames(pcm), mode="2pass", **config)
        except ServerError as error:
            return error
    raise AssertionError("the stream was not refused")


async def test_engine_failing_on_one_streams_chunk_fails_only_that_stream(
        start_server, paraformer_engine):
    pcm, _ = wav_pcm16("multi.wav")
    clean = await start_server(paraformer_engine)
    expected = (await transcribe(clean, pcm)).finals
    engine = FaultInjectingEngine(paraformer_engine)
    # Batches wait for all three streams' strides, so the bad one shares its batch.
    server = await start_server(engine, batching=BatchPolicy(max_batch_size=3, max_wait_ms=300))
    good = [asyncio.create_task(transcribe(server, pcm)) for _ in range(2)]
    bad = await refused_stream(server, marked(pcm, RAISE_MARK))
    assert bad.code == "internal_error" and bad.close_code == 1011
    assert "Traceback" not in bad.message and "injected" not in bad.message  # no internals
    for stream in good:
        assert (await stream).finals == expected
    assert engine.raised_in_batches[0] > 1  # it failed inside a shared batch
    assert server.health()["engine_failures"] == 1


async def test_a_stalled_engine_step_is_reported_and_the_server_recovers(start_server, caplog):
    engine = FaultInjectingEngine(StrideCountingEngine())
    server = await start_server(engine, engine_stall_s=0.5,
                                batching=BatchPolicy(max_batch_size=1, max_wait_ms=0))
    pcm, _ = wav_pcm16("multi.wav")
    waiting = asyncio.create_task(transcribe(server, pcm))  # queued behind the stall
    stalled = await refused_stream(server, marked(pcm, STALL_MARK))
    assert stalled.code == "internal_error" and "stalled" in stalled.message
    assert stalled.close_code == 1011
    assert engine.stalled.is_set() and not waiting.done()
    engine.release.set()  # the step returns late; its results are dropped
    assert segments((await waiting).messages) == [0, 1, 2]
    assert segments((await transcribe(server, pcm)).messages) == [0, 1, 2]
    assert server.health()["engine_stalls"] == 1
    assert [r for r in caplog.records if "has run" in r.getMessage()]


class ChattyEngine(StrideCountingEngine):
    """Big partials, so a client that does not read fills every buffer fast."""

    def _one(self, request):
        result = super()._one(request)
        return ChunkResult(result.state, result.committed + ("x" * 50_000,), result.tentative)


async def test_a_client_that_stops_reading_is_closed_and_its_room_still_gets_its_finals(
        start_server, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(connection_module, "SEND_STALL_S", 0.5)
    server = await start_server(ChattyEngine())
    viewer = await started_viewer(server, "deaf", until_finals=3)
    pcm, _ = wav_pcm16("multi.wav")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
    deaf = await connect(url(server), sock=sock, max_queue=1, max_size=None)
    await deaf.send(json.dumps({"mode": "2pass", "room": "deaf"}))
    for _ in range(3):  # ~33 s of speech: megabytes of partials it never reads
        async for frame in frames(pcm):
            await deaf.send(frame)
    good = await transcribe(server, pcm)
    async with asyncio.timeout(60):
        while server.connections:  # the deaf client is closed, not waited for
            await asyncio.sleep(0.05)
    deaf.transport.abort()
    assert segments(good.messages) == [0, 1, 2]
    assert len([m for m in await viewer if is_final(m)]) >= 3
    assert [r for r in caplog.records if "stopped reading" in r.getMessage()]


async def test_a_speaker_vanishing_mid_utterance_still_reaches_the_room(start_server):
    server = await start_server(StrideCountingEngine())
    viewer = await started_viewer(server, "gone", until_finals=1)
    pcm, _ = wav_pcm16("utt01.wav")
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass", room="gone", speaker="Ada")
        await send_frames(client, pcm[: len(pcm) // 2], 3200)
        client.websocket.transport.abort()  # no close frame: the network dropped
    (final,) = [m for m in await viewer if is_final(m)]
    assert final["speaker"] == "Ada" and final["text"].endswith("samples.")


class BrokenRoomServer(CaptionServer):
    """A server with a bug on one path: publishing to the room "broken" raises."""

    def _publish(self, room, message, text, utterance_final):
        if room == "broken":
            raise RuntimeError("injected bug in the rooms path")
        super()._publish(room, message, text, utterance_final)


async def test_a_bug_in_a_handler_closes_that_connection_with_1011_and_one_log_line(caplog):
    caplog.set_level(logging.INFO)
    server = BrokenRoomServer(ServerConfig(host="127.0.0.1", port=0, calibrate=False),
                              StrideCountingEngine())
    await server.start()
    try:
        pcm, _ = wav_pcm16("multi.wav")
        error = await refused_stream(server, pcm, room="broken")
        assert error.code == "internal_error" and error.close_code == 1011
        assert "injected" not in error.message
        assert segments((await transcribe(server, pcm, room="fine")).messages) == [0, 1, 2]
    finally:
        await server.stop()
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and "injected bug" in failed[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]
