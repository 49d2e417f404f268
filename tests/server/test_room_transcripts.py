"""Rooms that keep what was said, over real sockets (docs/transcripts.md):
speakers' finals are stored before anyone is sent them, carry a room id, and
viewers that reconnect with `?after=<id>` get exactly what they missed."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from websockets.asyncio.client import connect

from clients.client import CaptionClient
from server.app import CaptionServer
from server.config import RoomOptions, ServerConfig
from server.store import open_store
from server.store.base import StreamInfo
from server.store.memory import MemoryStore
from server.store.sqlite import SQLiteStore
from server.viewer import ViewerFeed, ViewerWriter
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.test_streaming_contract import transcribe
from tests.streaming.engine_double import StrideCountingEngine


def is_final(message: dict) -> bool:
    return "id" in message


async def read_finals(ws, count: int) -> list[dict]:
    """The next `count` finals from a viewer socket (partials are read and skipped)."""
    finals = []
    while len(finals) < count:
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if is_final(message):
            finals.append(message)
    return finals


async def open_viewer(server, room: str, after: int | None = None):
    query = "" if after is None else f"?after={after}"
    ws = await connect(url(server, f"/rooms/{room}{query}"))
    return ws


async def wait_for_viewers(server, count: int) -> None:
    async with asyncio.timeout(10):
        while server.rooms.viewer_count() < count:
            await asyncio.sleep(0.01)


@pytest.fixture
async def sqlite_server(start_server, tmp_path):
    async def start():
        return await start_server(StrideCountingEngine(),
                                  rooms=RoomOptions(store=str(tmp_path / "rooms.sqlite3")))
    return start


async def test_two_speakers_three_viewers_in_order_with_labels_and_history_first(sqlite_server):
    server = await sqlite_server()
    early = [await open_viewer(server, "meet") for _ in range(2)]
    await wait_for_viewers(server, 2)
    pcm, _ = wav_pcm16("multi.wav")  # three utterances
    spoken = await asyncio.gather(
        transcribe(server, pcm, room="meet", speaker="Ada", mode="2pass"),
        transcribe(server, pcm, room="meet", speaker="Grace", mode="2pass"),
    )
    seen = [await read_finals(ws, 6) for ws in early]
    assert seen[0] == seen[1]
    assert [m["id"] for m in seen[0]] == [1, 2, 3, 4, 5, 6]
    for speaker, transcript in zip(["Ada", "Grace"], spoken):
        theirs = [m for m in seen[0] if m["speaker"] == speaker]
        assert [m["segment"] for m in theirs] == [0, 1, 2]  # each speaker's own order
        assert theirs == transcript.finals  # what the speaker was sent, id included
    assert all(m["room"] == "meet" and "history" not in m for m in seen[0])

    late = await open_viewer(server, "meet")
    history = await read_finals(late, 6)
    assert [{**m, "history": False} for m in history] == \
        [{**m, "history": False} for m in seen[0]]
    assert all(m["history"] is True for m in history)
    lin = await transcribe(server, wav_pcm16("utt01.wav")[0], room="meet", speaker="Lin")
    (live,) = await read_finals(late, 1)
    assert live == lin.finals[0] and live["id"] == 7 and "history" not in live
    for ws in [*early, late]:
        await ws.close()


async def test_every_final_a_client_received_is_in_the_store(sqlite_server):
    server = await sqlite_server()
    viewer = await open_viewer(server, "store")
    await wait_for_viewers(server, 1)
    received = []
    for speaker, name in [("Ada", "multi.wav"), ("Grace", "utt02.wav"), ("Ada", "utt03.wav")]:
        spoken = await transcribe(server, wav_pcm16(name)[0], room="store", speaker=speaker)
        received += spoken.finals
    received += await read_finals(viewer, len(received))
    await viewer.close()
    stored = {f.id: f for f in await server.rooms.store.finals("store")}
    assert len(stored) == 5 and len({f.stream.key for f in stored.values()}) == 3
    for message in received:
        final = stored[message["id"]]
        assert final.message == message
        assert (final.text, final.speaker, final.start_ms, final.end_ms) == \
            (message["text"], message["speaker"], message["start"], message["end"])
        assert final.sentences == message["stamp_sents"] and final.sentences


async def test_resume_with_after_gets_exactly_the_missed_finals_then_live(sqlite_server):
    server = await sqlite_server()
    pcm, _ = wav_pcm16("utt01.wav")
    viewer = await open_viewer(server, "resume")
    await wait_for_viewers(server, 1)
    for _ in range(2):
        await transcribe(server, pcm, room="resume", speaker="Ada")
    before = await read_finals(viewer, 2)
    await viewer.close()
    for _ in range(2):  # said while the display was away
        await transcribe(server, pcm, room="resume", speaker="Ada")
    viewer = await open_viewer(server, "resume", after=before[-1]["id"])
    speaking = asyncio.gather(*(transcribe(server, pcm, room="resume", speaker=who)
                                for who in ["Ada", "Grace"]))
    after = await read_finals(viewer, 4)
    await speaking
    await viewer.close()
    assert [m["id"] for m in before + after] == [1, 2, 3, 4, 5, 6]
    assert [m.get("history", False) for m in after[:2]] == [True, True]
    stored = await server.rooms.store.finals("resume")
    assert [m["text"] for m in before + after] == [f.text for f in stored]


class SlowReadingStore(SQLiteStore):
    """A store whose reads take a while (a busy disk, a remote database), so
    finals are published while a viewer's catch-up is being read."""

    async def finals(self, *args, **kwargs):
        await asyncio.sleep(0.1)  # the query on its way
        found = await super().finals(*args, **kwargs)
        await asyncio.sleep(0.1)  # the rows on their way back
        return found


async def test_viewers_reconnecting_during_speech_miss_nothing_and_see_nothing_twice(tmp_path):
    """A display whose network keeps dropping: it reconnects with the last id
    it saw, over and over, while three speakers talk at once."""
    server = CaptionServer(ServerConfig(host="127.0.0.1", port=0, calibrate=False),
                           StrideCountingEngine())
    server.rooms.store = SlowReadingStore(tmp_path / "rooms.sqlite3")
    await server.start()
    pcm, _ = wav_pcm16("multi.wav")
    speaking = asyncio.gather(*(paced_speaker(server, pcm, "flaky", who, delay)
                                for who, delay in [("Ada", 0), ("Grace", 0.11), ("Lin", 0.23)]))
    seen: list[int] = []
    reconnects = 0
    while not speaking.done() or reconnects < 2:
        async with connect(url(server, f"/rooms/flaky?after={seen[-1] if seen else 0}")) as ws:
            reconnects += 1
            # connected for a moment: its catch-up and live finals meet, then it drops
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.4):
                    while True:
                        seen += [m["id"] for m in await read_finals(ws, 1)]
    await speaking
    await server.stop()
    assert seen == list(range(1, 10))


async def paced_speaker(server, pcm: bytes, room: str, speaker: str, delay: float) -> None:
    """A speaker whose finals come over a second or two, not all at once."""
    await asyncio.sleep(delay)
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass", room=room, speaker=speaker)
        for i in range(0, len(pcm), 3200):
            await client.send_audio(pcm[i : i + 3200])
            await asyncio.sleep(0.01)
        await client.end()
        await client.collect()


async def test_restart_keeps_the_transcript(tmp_path, start_server):
    options = RoomOptions(store=str(tmp_path / "rooms.sqlite3"))
    server = await start_server(StrideCountingEngine(), rooms=options)
    spoken = await transcribe(server, wav_pcm16("multi.wav")[0], room="kept", speaker="Ada")
    await server.stop()
    restarted = await start_server(StrideCountingEngine(), rooms=options)
    async with connect(url(restarted, "/rooms/kept?after=0")) as ws:
        assert await read_finals(ws, 3) == [{**m, "history": True} for m in spoken.finals]
    again = await transcribe(restarted, wav_pcm16("utt01.wav")[0], room="kept", speaker="Ada")
    assert again.finals[0]["id"] == 4  # ids go on where they stopped


async def test_a_store_path_opens_sqlite_in_wal_mode(tmp_path):
    store = open_store(str(tmp_path / "t.sqlite3"))
    await store.open()
    try:
        mode = await store._run(lambda: store._db.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
    finally:
        await store.close()


async def test_an_after_from_a_forgotten_transcript_gets_the_history_instead(start_server):
    """A memory store starts empty after a restart: a display resuming from
    id 40 must not wait for a 41st final to see anything again."""
    server = await start_server(StrideCountingEngine())
    spoken = await transcribe(server, wav_pcm16("utt01.wav")[0], room="new", speaker="Ada")
    async with connect(url(server, "/rooms/new?after=40")) as ws:
        assert await read_finals(ws, 1) == [{**spoken.finals[0], "history": True}]


async def messages_within(ws, seconds: float) -> list[dict]:
    """What a socket receives in the next `seconds` (the test's own wait, not a speed claim)."""
    received = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                received.append(json.loads(await ws.recv()))
    return received


class GatedStore(MemoryStore):
    """A store whose writes wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def append(self, *args, **kwargs):
        self.waiting.set()
        await self.gate.wait()
        return await super().append(*args, **kwargs)


async def test_a_final_is_stored_before_anyone_is_sent_it():
    server = CaptionServer(ServerConfig(host="127.0.0.1", port=0, calibrate=False),
                           StrideCountingEngine())
    store = server.rooms.store = GatedStore()
    await server.start()
    try:
        viewer = await open_viewer(server, "gate")
        await wait_for_viewers(server, 1)
        async with CaptionClient.connect(url(server)) as speaker:
            await speaker.start(mode="2pass", room="gate", speaker="Ada")
            await speaker.send_audio(wav_pcm16("utt01.wav")[0])
            await speaker.end()
            await asyncio.wait_for(store.waiting.wait(), 30)
            early = await messages_within(speaker.websocket, 0.5)
            assert early and not any(m["mode"] == "2pass-offline" for m in early)
            partials = await messages_within(viewer, 0.5)
            assert not any(m["mode"] == "2pass-offline" for m in partials)
            assert await store.finals("gate") == []
            store.gate.set()
            (final,) = (await speaker.collect()).finals
        assert await read_finals(viewer, 1) == [final]
        assert [f.message for f in await store.finals("gate")] == [final]
        await viewer.close()
    finally:
        await server.stop()


class BrokenStore(MemoryStore):
    async def finals(self, *args, **kwargs):
        raise OSError("disk gone")


async def test_a_viewer_whose_catch_up_fails_is_told_to_retry(caplog):
    server = CaptionServer(ServerConfig(host="127.0.0.1", port=0, calibrate=False),
                           StrideCountingEngine())
    server.rooms.store = BrokenStore()
    await server.start()
    try:
        async with connect(url(server, "/rooms/broken")) as ws:
            await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (1011, "transcript store unavailable; retry")
        assert "catch-up failed" in caplog.text
    finally:
        await server.stop()


class RecordingSocket:
    """What a viewer's writer sends, in order (the writer is under test, not the socket)."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))


async def test_a_live_final_that_was_overtaken_is_sent_live_in_id_order():
    """Two processes appending to one room: id 2 reaches the viewer before
    id 1. The writer sends 1 (from the store) then 2, both as live finals, so
    an overlay that hides history still shows the first (CI saw it hidden)."""
    store, feed, socket = MemoryStore(), ViewerFeed(max_finals=10), RecordingSocket()
    writer = ViewerWriter("meet", feed, socket, store)
    task = asyncio.create_task(writer.run(after=None))
    await asyncio.sleep(0)  # a first join into an empty room: no history
    speakers = [StreamInfo(key=name, speaker=name, wav_name=name, started_at=0.0)
                for name in ("a", "b")]
    sent = []
    for info, text in zip(speakers, ("first.", "second.")):
        message = {"mode": "2pass-offline", "text": text, "is_final": True, "stream": info.key}
        sent.append({**message, "id": await store.append("meet", info, message, 0.0)})
    feed.put(sent[1], None)  # overtakes
    feed.put(sent[0], None)  # arrives late: already sent from the store
    async with asyncio.timeout(5):
        while len(socket.sent) < 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    task.cancel()
    assert socket.sent == sent
