"""`captiond serve --workers 2`: the engine process holds the one transcript
store, so finals from speakers on different workers get one id sequence per
room, and a viewer on either worker catches up from it (docs/transcripts.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request

from websockets.asyncio.client import connect

from server.config import RoomOptions
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.test_room_transcripts import read_finals, wait_for_viewers
from tests.server.test_workers import (
    clients_on_two_workers,
    health,
    speak,
    wait_for,
    workers_server,
    ws_url,
)
from tests.streaming.engine_double import StrideCountingEngine


async def test_speakers_on_two_workers_share_one_transcript(tmp_path):
    rooms = RoomOptions(store=str(tmp_path / "rooms.sqlite3"))
    async with workers_server(StrideCountingEngine(), rooms=rooms) as server, \
            contextlib.AsyncExitStack() as stack:
        ada, grace = await clients_on_two_workers(server, stack)
        pcm, _ = wav_pcm16("multi.wav")
        spoken = await asyncio.gather(speak(ada, pcm, "Ada"), speak(grace, pcm, "Grace"))
        sent = [m for messages in spoken for m in messages if m["mode"] == "2pass-offline"]
        assert sorted(m["id"] for m in sent) == [1, 2, 3, 4, 5, 6]

        async with connect(ws_url(server, "/rooms/meet?after=2")) as viewer:
            caught_up = await read_finals(viewer, 4)
        assert [m["id"] for m in caught_up] == [3, 4, 5, 6]
        by_id = {m["id"]: m for m in sent}
        assert all({**m, "history": True} == {**by_id[m["id"]], "history": True}
                   for m in caught_up)

        address = f"http://127.0.0.1:{server.port}/rooms/meet/transcript.json"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(address, timeout=10).read())
        exported = json.loads(body)["finals"]
        assert [(f["id"], f["text"], f["speaker"]) for f in exported] == \
            [(i, by_id[i]["text"], by_id[i]["speaker"]) for i in range(1, 7)]


async def test_workers_publish_through_redis_to_another_server(tmp_path, redis_url,
                                                               start_server):
    """`--workers 2` with `--redis`: the engine process publishes its workers'
    messages to Redis and relays what Redis carries back to them."""
    rooms = RoomOptions(store=str(tmp_path / "rooms.sqlite3"), redis=redis_url)
    elsewhere = await start_server(StrideCountingEngine(), rooms=rooms)  # another process
    async with workers_server(StrideCountingEngine(), rooms=rooms) as server, \
            contextlib.AsyncExitStack() as stack:
        far = await stack.enter_async_context(connect(url(elsewhere, "/rooms/meet")))
        near = await stack.enter_async_context(connect(ws_url(server, "/rooms/meet")))
        await wait_for_viewers(elsewhere, 1)
        await wait_for(lambda: health(server)["viewers"] >= 1)  # both viewers in before speech
        ada, grace = await clients_on_two_workers(server, stack)
        pcm, _ = wav_pcm16("utt01.wav")
        spoken = await asyncio.gather(speak(ada, pcm, "Ada"), speak(grace, pcm, "Grace"))
        sent = sorted((m for messages in spoken for m in messages
                       if m["mode"] == "2pass-offline"), key=lambda m: m["id"])
        assert [m["id"] for m in sent] == [1, 2]
        assert await read_finals(far, 2) == sent
        assert await read_finals(near, 2) == sent
