"""Slow viewers (docs/transcripts.md): a viewer that never reads delays no one
else's finals, is closed with a reason once too far behind, and resumes with
`?after=<id>` without losing a final."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.config import RoomOptions
from server.viewer import ViewerFeed
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.test_room_transcripts import read_finals, wait_for_viewers
from tests.server.test_streaming_contract import transcribe
from tests.streaming.engine_double import StrideCountingEngine

LONG_TEXT = "word " * 25_000  # 125 kB: a few dozen finals fill the socket buffers


class LongFinalsEngine(StrideCountingEngine):
    """Finals long enough that a viewer who never reads blocks its socket soon."""

    def finalize(self, batch):
        return [replace(result, text=LONG_TEXT + result.text) for result in super().finalize(batch)]


async def speak_finals(server, room: str, streams: int) -> None:
    pcm, _ = wav_pcm16("multi.wav")  # three finals per stream
    await asyncio.gather(*(transcribe(server, pcm, room=room, speaker=f"S{i}")
                           for i in range(streams)))


async def stuck_viewer(server, room: str):
    """A viewer that reads nothing: a tiny receive buffer, and a client that
    stops taking frames off the socket after the first one."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    return await connect(url(server, f"/rooms/{room}"), sock=sock, max_queue=1,
                         max_size=None)


async def test_a_viewer_that_never_reads_delays_nobody_and_is_closed_with_a_resume_point(
        start_server):
    server = await start_server(LongFinalsEngine(),
                                rooms=RoomOptions(viewer_max_finals=40))
    stuck = await stuck_viewer(server, "hall")
    fast = [await connect(url(server, "/rooms/hall"), max_size=None) for _ in range(2)]
    await wait_for_viewers(server, 3)

    total = 0

    async def one_round() -> None:  # 15 finals; the fast viewers read every one
        nonlocal total
        await speak_finals(server, "hall", streams=5)
        for ws in fast:
            got = [m["id"] for m in await read_finals(ws, 15)]
            assert got == list(range(total + 1, total + 16))
        total += 15

    # The stuck viewer's socket buffers fill; everyone else keeps getting every final:
    while max(server.rooms.backlogs("hall")) == 0:
        assert total < 300, "the stuck viewer's socket never filled"
        await one_round()
    assert sorted(server.rooms.backlogs("hall"))[:2] == [0, 0]
    # …until it is more than 40 finals behind and closed:
    while server.rooms.viewer_count() == 3:
        assert total < 600, "the stuck viewer was never closed"
        await one_round()
    assert server.rooms.viewer_count() == 2

    received = []
    try:
        async for text in stuck:
            message = json.loads(text)
            if "id" in message:
                received.append(message["id"])
    except ConnectionClosed:
        pass
    assert stuck.close_code == 1008
    assert "too slow" in stuck.close_reason
    after = int(stuck.close_reason.rsplit("?after=", 1)[1])
    assert received == list(range(1, after + 1))  # in order, none skipped
    async with connect(url(server, f"/rooms/hall?after={after}"), max_size=None) as again:
        resumed = await read_finals(again, total - after)
    assert [m["id"] for m in resumed] == list(range(after + 1, total + 1))
    for ws in fast:
        await ws.close()


def partial(stream: str, segment: int, text: str) -> dict:
    return {"mode": "2pass-online", "stream": stream, "segment": segment, "text": text,
            "stable": text, "unstable": "", "is_final": False}


async def test_a_behind_viewer_gets_the_latest_partial_per_stream_with_all_its_text():
    feed = ViewerFeed(max_finals=10)
    for word in ["a", "b", "c"]:
        feed.put(partial("ada", 0, word), None)
    feed.put(partial("lin", 4, "x"), None)
    feed.put({"mode": "2pass-offline", "stream": "ada", "segment": 0, "id": 1, "text": "abc."},
             None)
    feed.put(partial("ada", 1, "d"), None)
    feed.put(partial("ada", 1, "e"), None)
    sent = [(await feed.get())[0] for _ in range(4)]
    assert [(m["stream"], m["text"]) for m in sent] == \
        [("ada", "abc"), ("lin", "x"), ("ada", "abc."), ("ada", "de")]
    assert feed.pending_finals == 0 and not feed.overflowed.is_set()


async def test_finals_are_never_coalesced_and_too_many_overflow_the_feed():
    feed = ViewerFeed(max_finals=3)
    for i in range(3):
        feed.put({"mode": "2pass-offline", "stream": "ada", "segment": i, "id": i + 1,
                  "text": str(i)}, None)
    assert feed.pending_finals == 3 and not feed.overflowed.is_set()
    feed.put({"mode": "2pass-offline", "stream": "ada", "segment": 3, "id": 4, "text": "3"},
             None)
    assert feed.overflowed.is_set()
    assert [(await feed.get())[0]["id"] for _ in range(3)] == [1, 2, 3]
