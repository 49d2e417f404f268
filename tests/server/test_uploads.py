"""Encoded uploads over real sockets: decoded off the event loop as they arrive,
and every way they can go wrong ends in a clear error or one log line
(docs/design.md §4, §8)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import av
import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.conftest import DATA, wav_pcm16
from tests.server.conftest import url
from tests.server.test_protocol_errors import good_stream
from tests.streaming.engine_double import StrideCountingEngine

FRAME = 4096


def encode(pcm: bytes, rate: int, container: str, codec: str) -> bytes:
    """PCM16 mono as an encoded file, written by FFmpeg (through PyAV)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate, layout="mono")
        for i in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, i : i + 1024].copy(), format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()


async def upload(server, data: bytes, **config) -> tuple[list[dict], int | None]:
    """Send `data` as one upload and end it; every message and the close code."""
    messages = []
    async with connect(url(server), max_size=None) as ws:
        await ws.send(json.dumps({"mode": "offline", "wav_name": "up", **config}))
        for i in range(0, len(data), FRAME):
            await ws.send(data[i : i + FRAME])
        await ws.send('{"is_speaking": false}')
        while not messages or not (messages[-1].get("is_final") or "error" in messages[-1]):
            messages.append(json.loads(await ws.recv()))
        if "error" in messages[-1]:
            await ws.wait_closed()
        return messages, ws.close_code


def finals(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("mode") in ("offline", "2pass-offline") and m["text"]]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


async def test_an_upload_cut_off_by_a_disconnect_is_one_log_line_not_a_traceback(
        start_server, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server(StrideCountingEngine())
    mp3 = (DATA / "utt01.mp3").read_bytes()
    for size in (10, 500, 3000, len(mp3) // 2):  # 10 bytes cannot even be probed
        async with connect(url(server)) as ws:
            await ws.send(json.dumps({"mode": "offline", "wav_format": "mp3"}))
            await ws.send(mp3[:size])
    good = await good_stream(server)  # the server still serves, and finished those uploads
    while server.connections:
        await asyncio.sleep(0.01)
    assert [m["segment"] for m in good if m["mode"] == "2pass-offline"] == [0, 1, 2]
    assert tracebacks(caplog) == []
    undecodable = [r for r in caplog.records if r.name == "captiond.uploads"]
    assert len(undecodable) == 1 and "decode" in undecodable[0].getMessage()


async def test_an_upload_is_recognised_while_it_is_still_arriving(start_server):
    server = await start_server(StrideCountingEngine())
    wav = (DATA / "multi.wav").read_bytes()  # three utterances in 11 s
    async with connect(url(server), max_size=None) as ws:
        await ws.send(json.dumps({"mode": "offline", "wav_format": "wav"}))
        three_quarters = len(wav) * 3 // 4
        for i in range(0, three_quarters, FRAME):
            await ws.send(wav[i : min(i + FRAME, three_quarters)])
        # Before the rest is sent, the first two utterances were decoded and recognised.
        early = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(2)]
        await ws.send(wav[three_quarters:])
        await ws.send('{"is_speaking": false}')
        rest = [json.loads(await ws.recv())]
        while not rest[-1]["is_final"]:
            rest.append(json.loads(await ws.recv()))
    assert [m["segment"] for m in early] == [0, 1]
    assert [m["segment"] for m in finals(rest)] == [2]


async def test_an_mp4_with_its_index_at_the_end_is_decoded_once_whole(start_server):
    server = await start_server(StrideCountingEngine())
    pcm, rate = wav_pcm16("multi.wav")
    m4a = encode(pcm, rate, "mp4", "aac")
    assert m4a.find(b"moov") > m4a.find(b"mdat")  # FFmpeg writes the index last
    messages, _ = await upload(server, m4a, wav_format="m4a")
    assert [m["segment"] for m in finals(messages)] == [0, 1, 2]


async def test_an_encoded_live_stream_gets_partials_and_finals(start_server):
    server = await start_server(StrideCountingEngine())
    pcm, rate = wav_pcm16("multi.wav")
    opus = encode(pcm, rate, "ogg", "libopus")  # what a browser's MediaRecorder sends
    messages, _ = await upload(server, opus, mode="2pass", wav_format="ogg")
    assert any(m["mode"] == "2pass-online" for m in messages)
    assert [m["segment"] for m in finals(messages)] == [0, 1, 2]
    assert messages[-1]["is_final"] is True


@pytest.mark.parametrize("garbage", [b"definitely not audio" * 300, b"\x00" * 20000])
async def test_an_undecodable_upload_is_refused_with_1003_while_others_go_on(
        start_server, garbage, caplog):
    server = await start_server(StrideCountingEngine())
    good = asyncio.create_task(good_stream(server))
    messages, close_code = await upload(server, garbage, wav_format="mp3")
    assert messages[-1]["code"] == "unsupported_format" and "decode" in messages[-1]["error"]
    assert close_code == 1003
    assert [m["segment"] for m in await good if m["mode"] == "2pass-offline"] == [0, 1, 2]
    assert tracebacks(caplog) == []
