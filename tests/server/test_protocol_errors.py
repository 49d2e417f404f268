"""Bad input over real sockets: a clear error, the right close code, and no harm
to a concurrent good stream (docs/design.md §4, §8)."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from websockets.asyncio.client import connect

from clients.client import CaptionClient, ServerError
from streaming.session import SessionLimits
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine

FRAME = 3200  # 100 ms


async def good_stream(server) -> list[dict]:
    pcm, _ = wav_pcm16("multi.wav")
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass", wav_name="good")
        for i in range(0, len(pcm), FRAME):
            await client.send_audio(pcm[i : i + FRAME])
            await asyncio.sleep(0)
        await client.end()
        return (await client.collect()).messages


async def refused(server, first: str | bytes, then: list = ()) -> tuple[dict, int]:
    async with connect(url(server), max_size=None) as ws:
        await ws.send(first)
        for frame in then:
            await ws.send(frame)
        reply = json.loads(await ws.recv())
        await ws.wait_closed()
        return reply, ws.close_code


BAD_INPUT = {
    "non-JSON text": ("hello server", [], "invalid_json", 1007),
    "audio before config": (b"\x00\x01" * 100, [], "audio_before_config", 1008),
    "odd byte count": ('{"mode": "2pass"}', [b"\x00" * 321], "invalid_audio", 1007),
    "empty frame": ('{"mode": "2pass"}', [b""], "invalid_audio", 1007),
    "audio_fs 0": ('{"audio_fs": 0}', [], "invalid_config", 1007),
    "audio_fs negative": ('{"audio_fs": -8000}', [], "invalid_config", 1007),
    "audio_fs 1e9": ('{"audio_fs": 1000000000}', [], "invalid_config", 1007),
    "unknown mode": ('{"mode": "fast"}', [], "invalid_config", 1007),
    "malformed chunk_size": ('{"chunk_size": [5, "x", 5]}', [], "invalid_config", 1007),
    "malformed hotwords": ('{"hotwords": "{\\"a\\": [1]}"}', [], "invalid_config", 1007),
    "frame over the limit": ('{"mode": "2pass"}', [b"\x00\x00" * 40_000], "too_big", 1009),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
async def test_bad_input_is_refused_clearly_while_a_good_stream_completes(start_server, case):
    first, then, code, close_code = BAD_INPUT[case]
    server = await start_server(StrideCountingEngine(),
                                limits=SessionLimits(max_frame_bytes=64_000))
    good = asyncio.create_task(good_stream(server))
    reply, closed_with = await refused(server, first, then)
    assert reply["code"] == code and reply["error"]
    assert closed_with == close_code
    messages = await good
    assert messages[-1]["is_final"] is True
    assert [m["segment"] for m in messages if m["mode"] == "2pass-offline"] == [0, 1, 2]


async def test_frame_far_over_the_limit_is_cut_off_by_the_transport(start_server):
    server = await start_server(StrideCountingEngine(), limits=SessionLimits(max_frame_bytes=1000))
    async with connect(url(server), max_size=None) as ws:
        await ws.send('{"mode": "2pass"}')
        await ws.send(b"\x00\x00" * 5000)  # 10 kB > 2 x 1000: websockets refuses it
        await ws.wait_closed()
        assert ws.close_code == 1009


async def test_client_sees_server_errors_as_exceptions(start_server):
    server = await start_server(StrideCountingEngine())
    async with CaptionClient.connect(url(server)) as client:
        await client.start(audio_fs=-1)
        with pytest.raises(ServerError) as refused_stream:
            await client.collect()
    assert refused_stream.value.code == "invalid_config"
    assert refused_stream.value.close_code == 1007


async def test_idle_connection_is_closed_with_a_reason(start_server):
    server = await start_server(StrideCountingEngine(), idle_timeout_s=0.3)
    reply, closed_with = await refused(server, '{"mode": "2pass"}')
    assert reply["code"] == "idle_timeout" and closed_with == 1008


async def test_subprotocol_binary_is_selected_and_none_is_accepted(start_server):
    server = await start_server(StrideCountingEngine())
    async with connect(url(server), subprotocols=["binary"]) as ws:
        assert ws.subprotocol == "binary"
    async with connect(url(server)) as ws:
        assert ws.subprotocol is None


async def test_audio_frames_are_not_deflated(start_server):
    # Clients (browsers, websockets) offer permessage-deflate; PCM barely
    # compresses and inflating every frame costs the event loop, so it is declined.
    server = await start_server(StrideCountingEngine())
    async with connect(url(server)) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_health_endpoint_reports_status(start_server):
    server = await start_server(StrideCountingEngine())
    health_url = f"http://127.0.0.1:{server.port}/health"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(health_url, timeout=5).read())
    health = json.loads(body)
    assert health["status"] == "ok" and health["engine"] == "stride-counting"
    assert health["online_busy_s"] == 0.0 and health["final_busy_s"] == 0.0
