"""Per-client limits over real sockets (docs/security.md): each one hit gets its
error and close code, is counted, and a concurrent well-behaved stream finishes
as if nothing happened."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from server.auth import AccessPolicy, parse_token_spec
from server.limits import ConnectionLimits
from streaming.session import SessionLimits
from tests.conftest import DATA, wav_pcm16
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine

FRAME = 3200  # 100 ms at 16 kHz
TOKEN = "limits-token-1"


async def good_stream(server, path: str = "/", started: asyncio.Event | None = None,
                      config: dict | None = None) -> list[dict]:
    """utt02.wav (3.3 s) in 100 ms frames at real-time pace, in 2pass."""
    pcm, rate = wav_pcm16("utt02.wav")
    async with connect(url(server, path)) as ws:
        await ws.send(json.dumps({"mode": "2pass", "wav_name": "good", "audio_fs": rate,
                                  **(config or {})}))
        for i in range(0, len(pcm), FRAME):
            await ws.send(pcm[i:i + FRAME])
            if started is not None:
                started.set()
            await asyncio.sleep(FRAME / 2 / rate)
        await ws.send(json.dumps({"is_speaking": False}))
        messages = [json.loads(await ws.recv())]
        while not messages[-1].get("is_final"):
            messages.append(json.loads(await ws.recv()))
        return messages


def assert_complete(messages: list[dict]) -> None:
    assert not [m for m in messages if "error" in m]
    assert messages[-1]["is_final"] is True
    assert [m for m in messages if m["mode"] == "2pass-offline" and m["text"]]


async def refused(server, config: dict, audio: bytes = b"", path: str = "/",
                  frame: int = FRAME) -> tuple[dict, int]:
    """Send a config and audio as fast as possible; the error and the close code."""
    async with connect(url(server, path), max_size=None) as ws:
        try:
            await ws.send(json.dumps(config))
            for i in range(0, len(audio), frame):
                await ws.send(audio[i:i + frame])
            await ws.send(json.dumps({"is_speaking": False}))
        except Exception:  # noqa: BLE001 — the server may close mid-send
            pass
        reply = json.loads(await ws.recv())
        while "error" not in reply:
            reply = json.loads(await ws.recv())
        await ws.wait_closed()
        return reply, ws.close_code


async def with_good_stream(server, refusal, **good) -> tuple[dict, int]:
    """Run `refusal` while a good stream is under way; check the good one."""
    started = asyncio.Event()
    good_task = asyncio.create_task(good_stream(server, started=started, **good))
    await started.wait()
    reply, close_code = await refusal
    assert_complete(await good_task)
    return reply, close_code


async def test_connections_per_address(start_server):
    server = await start_server(StrideCountingEngine(),
                                connection_limits=ConnectionLimits(max_connections_per_address=2))
    async with connect(url(server)):  # one idle connection, plus the good stream: two
        reply, close_code = await with_good_stream(server, refused(server, {"mode": "2pass"}))
    assert (reply["code"], close_code) == ("too_many_connections", 1008)
    assert server.gate.counts["too_many_connections"] == 1
    assert_complete(await good_stream(server))  # closed connections were given back


async def test_concurrent_streams_per_token(start_server):
    server = await start_server(
        StrideCountingEngine(), access=AccessPolicy(tokens=(parse_token_spec(TOKEN),)),
        connection_limits=ConnectionLimits(max_streams_per_token=1))
    reply, close_code = await with_good_stream(
        server, refused(server, {"mode": "2pass", "token": TOKEN}), config={"token": TOKEN})
    assert (reply["code"], close_code) == ("too_many_streams", 1008)
    assert server.gate.counts["too_many_streams"] == 1
    assert_complete(await good_stream(server, config={"token": TOKEN}))  # the slot came back


async def test_maximum_stream_duration(start_server):
    server = await start_server(StrideCountingEngine(), limits=SessionLimits(max_stream_s=5.0))
    pcm, rate = wav_pcm16("multi.wav")  # 11 s
    reply, close_code = await with_good_stream(
        server, refused(server, {"mode": "offline", "audio_fs": rate}, pcm))
    assert (reply["code"], close_code) == ("stream_too_long", 1008)
    assert server.gate.counts["stream_too_long"] == 1


@pytest.mark.parametrize("mode", ["online", "2pass"])
async def test_audio_faster_than_real_time(start_server, mode):
    server = await start_server(StrideCountingEngine(),
                                limits=SessionLimits(max_audio_ahead_s=1.0))
    pcm, rate = wav_pcm16("multi.wav")  # 11 s sent at once
    reply, close_code = await with_good_stream(
        server, refused(server, {"mode": mode, "audio_fs": rate}, pcm))
    assert (reply["code"], close_code) == ("faster_than_real_time", 1008)
    assert "faster than real time" in reply["error"]
    assert server.gate.counts["faster_than_real_time"] == 1
    # offline uploads are not real-time: the same flood is fine there
    async with connect(url(server)) as ws:
        await ws.send(json.dumps({"mode": "offline", "audio_fs": rate}))
        await ws.send(pcm)
        await ws.send(json.dumps({"is_speaking": False}))
        while not (message := json.loads(await ws.recv()))["is_final"]:
            assert "error" not in message


async def test_hotword_list_size(start_server):
    server = await start_server(StrideCountingEngine(), limits=SessionLimits(max_hotwords=3))
    reply, close_code = await with_good_stream(
        server, refused(server, {"mode": "2pass", "hotwords": "one,two,three,four"}),
        config={"hotwords": "one,two,three"})
    assert (reply["code"], close_code) == ("too_many_hotwords", 1009)
    assert "at most 3 hotwords" in reply["error"]
    assert server.gate.counts["too_many_hotwords"] == 1


async def test_encoded_upload_size(start_server):
    server = await start_server(StrideCountingEngine(),
                                limits=SessionLimits(max_file_bytes=20_000))
    mp3 = (DATA / "utt01.mp3").read_bytes()  # 27 kB
    reply, close_code = await with_good_stream(
        server, refused(server, {"mode": "offline", "wav_format": "mp3"}, mp3, frame=4096))
    assert (reply["code"], close_code) == ("too_big", 1009)
    assert server.gate.counts["too_big"] == 1
