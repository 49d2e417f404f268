"""Several captiond servers share rooms over a real Redis, with a shared
transcript store (docs/transcripts.md): a speaker on one reaches viewers on
the other, and catch-up reads the shared store."""

from __future__ import annotations

import asyncio
import json
import signal

from websockets.asyncio.client import connect

from clients.client import CaptionClient
from server.config import RoomOptions
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.test_room_transcripts import read_finals, wait_for_viewers
from tests.server.test_store_durability import start_captiond
from tests.server.test_streaming_contract import send_frames, transcribe
from tests.streaming.engine_double import StrideCountingEngine


async def test_a_speaker_on_one_server_reaches_viewers_on_another(start_server, redis_url,
                                                                  postgres_url):
    rooms = RoomOptions(store=postgres_url, redis=redis_url)
    here, there = [await start_server(StrideCountingEngine(), rooms=rooms) for _ in range(2)]
    watching = await connect(url(there, "/rooms/hall"))
    await wait_for_viewers(there, 1)
    pcm, _ = wav_pcm16("multi.wav")
    spoken = await asyncio.gather(transcribe(here, pcm, room="hall", speaker="Ada"),
                                  transcribe(there, pcm, room="hall", speaker="Grace"))
    seen = await read_finals(watching, 6)
    await watching.close()
    assert sorted(m["id"] for m in seen) == [1, 2, 3, 4, 5, 6]
    assert [m["id"] for m in seen] == [1, 2, 3, 4, 5, 6]  # one order for every viewer
    for speaker, transcript in zip(["Ada", "Grace"], spoken):
        assert [m for m in seen if m["speaker"] == speaker] == transcript.finals

    async with connect(url(here, "/rooms/hall?after=4")) as late:
        assert [m["id"] for m in await read_finals(late, 2)] == [5, 6]


async def test_two_captiond_processes_share_a_room(test_models_dir, tmp_path, redis_url,
                                                   postgres_url):
    extra = ["--redis", redis_url]
    (a, port_a), (b, port_b) = await asyncio.gather(
        start_captiond(test_models_dir, postgres_url, extra),
        start_captiond(test_models_dir, postgres_url, extra))
    try:
        async with connect(f"ws://127.0.0.1:{port_b}/rooms/hall") as viewer:
            async with CaptionClient.connect(f"ws://127.0.0.1:{port_a}") as speaker:
                await speaker.start(mode="2pass", room="hall", speaker="Ada")
                await send_frames(speaker, wav_pcm16("multi.wav")[0], 3200)
                await speaker.end()
                sent = (await speaker.collect()).finals
            assert sent and [m["id"] for m in sent] == list(range(1, len(sent) + 1))
            assert await read_finals(viewer, len(sent)) == sent
        async with connect(f"ws://127.0.0.1:{port_b}/rooms/hall?after=1") as resumed:
            caught_up = await read_finals(resumed, len(sent) - 1)
        assert [json.dumps({**m, "history": True}) for m in sent[1:]] == \
            [json.dumps(m) for m in caught_up]
    finally:
        for process in (a, b):
            process.send_signal(signal.SIGTERM)
        assert [await process.wait() for process in (a, b)] == [0, 0]
