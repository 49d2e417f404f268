"""A running server applies each room's own retention and the defaults to the
other rooms (docs/transcripts.md), on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from server.config import RoomOptions
from server.store import Retention
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.test_room_transcripts import read_finals
from tests.server.test_streaming_contract import transcribe
from tests.streaming.engine_double import StrideCountingEngine

ROOMS = ("board", "standup", "lobby")
RETENTION = Retention(max_finals_per_room=2, rooms={
    "board": Retention(),  # kept forever: longer than the default
    "standup": Retention(max_finals_per_room=1),  # shorter than the default
})


@pytest.fixture(params=["sqlite", "postgresql"])
def store_spec(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "rooms.sqlite3")
    return request.getfixturevalue("postgres_url")


async def kept_ids(server, room: str) -> list[int]:
    return [f.id for f in await server.rooms.store.finals(room)]


async def test_each_room_keeps_what_its_own_rules_say(start_server, store_spec):
    speaking = await start_server(StrideCountingEngine(), rooms=RoomOptions(store=store_spec))
    multi = wav_pcm16("multi.wav")[0]  # three utterances: ids 1..3 in each room
    for room in ROOMS:
        await transcribe(speaking, multi, room=room, speaker="Ada")
    await speaking.stop()

    server = await start_server(StrideCountingEngine(),
                                rooms=RoomOptions(store=store_spec, retention=RETENTION))
    async with asyncio.timeout(30):  # the retention task's first pass runs at startup
        while await kept_ids(server, "lobby") != [2, 3]:
            await asyncio.sleep(0.05)
    assert await kept_ids(server, "board") == [1, 2, 3]
    assert await kept_ids(server, "standup") == [3]

    async with connect(url(server, "/rooms/standup?after=0")) as viewer:
        assert [m["id"] for m in await read_finals(viewer, 1)] == [3]
        later = await transcribe(server, wav_pcm16("utt01.wav")[0], room="standup",
                                 speaker="Ada")
        assert later.finals[0]["id"] == 4  # ids go on after pruning
        assert await read_finals(viewer, 1) == later.finals
