"""A transcript store that fails its writes, over real sockets (docs/reliability.md):
a failed write is retried; a final reaches no one before it is stored; a store
that stays broken ends the stream with 1011, and the streams beside it go on
once the store is back. The faults come from the SQLite store's own hook
(`fail_next_writes`), raised inside its write transaction."""

from __future__ import annotations

import asyncio
import logging

import pytest

from clients.client import CaptionClient, ServerError
from server.config import RoomOptions
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.test_operations_routes import http_get
from tests.server.test_rooms import is_final, started_viewer
from tests.server.test_streaming_contract import send_frames, transcribe
from tests.streaming.engine_double import StrideCountingEngine

# multi.wav's first utterance and the pause after it: enough for its final
# without ending the stream (the second utterance starts at 4.08 s).
FIRST_UTTERANCE_BYTES = 2 * 16000 * 39 // 10


@pytest.fixture
def multi() -> bytes:
    return wav_pcm16("multi.wav")[0]


@pytest.fixture
async def sqlite_server(start_server, tmp_path):
    async def start(retry_s: float):
        options = RoomOptions(store=str(tmp_path / "rooms.sqlite3"), store_retry_s=retry_s)
        return await start_server(StrideCountingEngine(), rooms=options)
    return start


async def next_final(client: CaptionClient) -> dict:
    async for message in client.messages():
        if is_final(message):
            return message
    raise AssertionError("the stream ended without a final")


async def stored_messages(server, room: str) -> list[dict]:
    return [f.message for f in await server.rooms.store.finals(room)]


def problems(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_write_that_fails_once_is_retried_and_every_final_arrives_once(
        sqlite_server, multi, caplog):
    server = await sqlite_server(retry_s=5.0)
    viewer = await started_viewer(server, "retry", until_finals=3)
    server.rooms.store.fail_next_writes(1)
    spoken = await transcribe(server, multi, room="retry", speaker="Ada", mode="2pass")
    assert server.rooms.store.injected_failures == 1
    assert [m["segment"] for m in spoken.finals] == [0, 1, 2]
    assert [m["id"] for m in spoken.finals] == [1, 2, 3]  # the failed try used no id
    assert await stored_messages(server, "retry") == spoken.finals
    assert [m for m in await viewer if is_final(m)] == spoken.finals
    retried = [r for r in caplog.records if "stored a final at try 2" in r.getMessage()]
    assert len(retried) == 1 and "disk is full" in retried[0].getMessage()
    assert not problems(caplog)


async def test_a_store_that_stays_broken_ends_the_stream_and_sent_nothing_unstored(
        sqlite_server, multi, caplog):
    server = await sqlite_server(retry_s=0.5)
    received = []
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass", room="down", speaker="Ada")
        await send_frames(client, multi[:FIRST_UTTERANCE_BYTES], 3200)
        received.append(await next_final(client))
        server.rooms.store.fail_next_writes(10**6)  # the disk is full from now on
        await send_frames(client, multi[FIRST_UTTERANCE_BYTES:], 3200)
        await client.end()
        with pytest.raises(ServerError) as ended:
            async for message in client.messages():
                received += [message] if is_final(message) else []
    assert (ended.value.code, ended.value.close_code) == ("store_unavailable", 1011)
    assert "disk" not in ended.value.message  # no internals to the client
    status, body = await http_get(server, "/readyz")
    assert status == 503 and "transcript store: writes failing" in body
    assert await stored_messages(server, "down") == received  # nothing sent is missing
    assert server.rooms.store.injected_failures > 1  # it was retried before giving up
    (failure,) = problems(caplog)
    assert "could not store a final" in failure.getMessage() and not failure.exc_info


async def test_a_stream_beside_the_broken_one_goes_on_once_the_store_recovers(
        sqlite_server, multi, caplog):
    server = await sqlite_server(retry_s=3.0)
    store = server.rooms.store
    async with (CaptionClient.connect(url(server)) as broken,
                CaptionClient.connect(url(server)) as beside):
        await broken.start(mode="2pass", room="meet", speaker="Ada")
        await beside.start(mode="2pass", room="meet", speaker="Lin")
        await send_frames(broken, multi[:FIRST_UTTERANCE_BYTES], 3200)
        await next_final(broken)
        store.fail_next_writes(10**6)
        await send_frames(broken, multi[FIRST_UTTERANCE_BYTES:], 3200)
        with pytest.raises(ServerError):
            await broken.collect()
        # Lin speaks while the store is still down; it comes back meanwhile.
        failed_before = store.injected_failures
        lin = asyncio.create_task(transcribe_on(beside, multi))
        async with asyncio.timeout(30):
            while store.injected_failures == failed_before:
                await asyncio.sleep(0.01)
        assert (await http_get(server, "/readyz"))[0] == 503
        store.fail_next_writes(0)
        spoken = await lin
    assert [m["segment"] for m in spoken.finals] == [0, 1, 2]
    stored = await stored_messages(server, "meet")
    assert [m["id"] for m in stored] == [1, 2, 3, 4]  # Ada's first, then Lin's three
    assert stored[1:] == spoken.finals
    assert await http_get(server, "/readyz") == (200, "ready\n")
    assert len(problems(caplog)) == 1  # Ada's stream, not Lin's


async def transcribe_on(client: CaptionClient, pcm: bytes):
    await send_frames(client, pcm, 3200)
    await client.end()
    return await client.collect()
