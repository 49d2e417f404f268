"""The server contract every engine meets, end to end over real sockets.

Parametrised over engines (docs/design.md §7): the generated tiny Paraformer models and
Whisper tiny.en. Audio is sent as fast as the socket takes it; pacing does not
change results because the session re-chunks by samples, not by time.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from clients.client import CaptionClient, Transcript
from tests.conftest import DATA, wav_pcm16
from tests.server.conftest import url


async def transcribe(server, pcm: bytes, frame_bytes: int = 3200, **config) -> Transcript:
    async with CaptionClient.connect(url(server)) as client:
        await client.start(**config)
        await send_frames(client, pcm, frame_bytes)
        await client.end()
        return await client.collect()


async def send_frames(client: CaptionClient, data: bytes, frame_bytes: int) -> None:
    for i in range(0, len(data), frame_bytes):
        await client.send_audio(data[i : i + frame_bytes])
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def multi() -> bytes:
    return wav_pcm16("multi.wav")[0]


async def test_2pass_stream_gives_partials_and_one_final_per_utterance(start_server, engine,
                                                                       multi):
    server = await start_server(engine)
    result = await transcribe(server, multi, mode="2pass", wav_name="meeting")
    modes = {m["mode"] for m in result.messages}
    assert modes == {"2pass-online", "2pass-offline"}
    assert [m["segment"] for m in result.finals] == [0, 1, 2]
    assert all(m["text"] for m in result.finals)
    assert all(m["wav_name"] == "meeting" for m in result.messages)
    starts = [m["start"] for m in result.finals]
    ends = [m["end"] for m in result.finals]
    assert starts == sorted(starts) and all(e <= s for e, s in zip(ends, starts[1:]))
    assert [m["is_final"] for m in result.messages] == [False] * (len(result.messages) - 1) + [True]
    for final in result.finals:  # FunASR timestamps: a JSON string of [start, end] pairs
        spans = json.loads(final["timestamp"])
        assert all(final["start"] <= a <= b <= final["end"] + 1000 for a, b in spans)


async def test_online_mode_sends_partials_only_and_marks_utterance_ends(start_server, engine,
                                                                        multi):
    server = await start_server(engine)
    result = await transcribe(server, multi, mode="online")
    assert {m["mode"] for m in result.messages} == {"online"}
    ends = [m for m in result.messages if m.get("final")]
    assert [m["segment"] for m in ends] == [0, 1, 2]
    for end in ends:  # appended `text` deltas rebuild the committed utterance
        deltas = [m["text"] for m in result.messages if m["segment"] == end["segment"]]
        assert engine.render(deltas) .replace(" ", "") == end["stable"].replace(" ", "")
    assert result.messages[-1]["is_final"] is True


async def test_offline_mode_sends_only_finals(start_server, engine, multi):
    server = await start_server(engine)
    result = await transcribe(server, multi, mode="offline")
    assert {m["mode"] for m in result.messages} == {"offline"}
    assert [m["segment"] for m in result.finals] == [0, 1, 2]


@pytest.mark.parametrize("name", ["utt01.mp3", "utt01.wav"])
async def test_encoded_file_in_offline_mode_is_transcribed(start_server, engine, name):
    server = await start_server(engine)
    data = (DATA / name).read_bytes()
    fmt = name.rsplit(".", 1)[1]
    result = await transcribe(server, data, 16384, mode="offline", wav_format=fmt)
    assert len(result.finals) == 1 and result.finals[0]["text"]
    assert result.finals[0]["end"] > 2000


async def test_results_do_not_depend_on_frame_size(start_server, engine, multi):
    server = await start_server(engine)
    results = [await transcribe(server, multi, size, mode="2pass") for size in (320, 3200, 32000)]
    finals = [r.finals for r in results]
    assert finals[0] == finals[1] == finals[2]
    partial_texts = [[m["text"] for m in r.partials] for r in results]
    assert partial_texts[0] == partial_texts[1] == partial_texts[2]


async def test_streams_follow_one_another_on_one_connection(start_server, engine, multi):
    server = await start_server(engine)
    utt, _ = wav_pcm16("utt02.wav")
    async with CaptionClient.connect(url(server)) as client:
        collected = []
        for name, pcm in (("first", multi), ("second", utt)):
            await client.start(mode="2pass", wav_name=name)
            await send_frames(client, pcm, 3200)
            await client.end()
            collected.append(await client.collect())
    first, second = collected
    assert len(first.finals) == 3 and len(second.finals) == 1
    assert {m["wav_name"] for m in second.messages} == {"second"}
    assert second.finals[0]["segment"] == 0


async def test_shutdown_drains_open_streams_before_stopping(start_server, engine):
    server = await start_server(engine)
    pcm, _ = wav_pcm16("utt01.wav")
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass")
        await send_frames(client, pcm[: len(pcm) * 2 // 3], 3200)  # stop mid-utterance
        messages = client.messages()
        first = await anext(messages)  # the server is streaming this utterance now
        drain = asyncio.create_task(server.drain())
        rest = [message async for message in messages]
        await drain
    finals = [m for m in [first, *rest] if m["mode"] == "2pass-offline"]
    assert len(finals) == 1 and finals[0]["is_final"] is True
    assert client.websocket.close_code == 1001
