"""`captiond watch`: a room's captions rendered with rich while speakers stream."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console

from clients.captions import CaptionBoard
from clients.file import FileOptions, transcribe_file
from clients.watch import Backoff, RoomView, room_url, watch_room
from tests.conftest import DATA, references
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine

FAST = Backoff(first=0.05, longest=0.2)


def recording_console() -> Console:
    """Not a terminal: the live region is not redrawn into the record, so the
    record holds exactly the final lines that scrolled by."""
    return Console(file=io.StringIO(), record=True, width=200, force_terminal=False)


async def stream_file(server, name: str, **options) -> None:
    await transcribe_file(
        FileOptions(str(DATA / name), url(server), realtime=False, progress=False, **options),
        console=Console(file=io.StringIO()),
    )


async def shown_finals(console: Console, count: int, speaker: str) -> list[str]:
    """Wait until `count` final lines of `speaker` were printed; return them."""
    for _ in range(600):
        lines = [line for line in console.export_text(clear=False).splitlines()
                 if line.startswith(f"{speaker}: ")]
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(console.export_text(clear=False))


async def test_watch_shows_a_rooms_finals_with_speaker_names(start_server, whisper_engine):
    server = await start_server(whisper_engine)
    console, stop = recording_console(), asyncio.Event()
    watcher = asyncio.create_task(watch_room(url(server), "board", console, stop, FAST))
    while server.rooms.viewer_count() == 0:
        await asyncio.sleep(0.01)
    await stream_file(server, "multi.wav", room="board", speaker="Ada")
    lines = await shown_finals(console, 3, "Ada")
    stop.set()
    await asyncio.wait_for(watcher, 5)
    expected = [f"Ada: {sentence}" for sentence in references()["multi.wav"]]
    assert [line.rstrip() for line in lines] == expected


async def test_watch_reconnects_and_history_adds_only_missed_finals(start_server):
    server = await start_server(StrideCountingEngine())
    console, stop = recording_console(), asyncio.Event()
    watcher = asyncio.create_task(watch_room(url(server), "r", console, stop, FAST))
    while server.rooms.viewer_count() == 0:
        await asyncio.sleep(0.01)
    await stream_file(server, "utt01.wav", room="r", speaker="Ada")
    await shown_finals(console, 1, "Ada")
    for connection in server._server.connections:  # the viewer's link drops
        await connection.close()
    await stream_file(server, "utt02.wav", room="r", speaker="Grace")  # missed meanwhile
    await shown_finals(console, 1, "Grace")  # came with the catch-up on reconnect
    paths = [c.request.path for c in server._server.connections]
    assert paths == ["/rooms/r?after=1"]  # resumed after the one final it had
    stop.set()
    await asyncio.wait_for(watcher, 5)
    text = console.export_text()
    assert text.count("Ada: ") == 1 and text.count("Grace: ") == 1  # no replayed duplicates


async def test_watch_keeps_retrying_until_the_server_is_there(unused_tcp_port):
    console, stop = recording_console(), asyncio.Event()
    watcher = asyncio.create_task(
        watch_room(f"ws://127.0.0.1:{unused_tcp_port}", "r", console, stop, FAST))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(watcher, 5)  # it did not give up, and it stops when told


def test_the_live_region_shows_partials_with_their_unstable_tail_and_a_status():
    view = RoomView("board")
    view.board.receive({"mode": "2pass-online", "wav_name": "mic", "speaker": "Ada",
                        "segment": 3, "text": "good", "stable": "good", "unstable": "morning"})
    view.status = "● room board — live"
    console = Console(file=io.StringIO(), record=True, width=80, force_terminal=True)
    console.print(view)
    assert console.export_text(clear=False) == "Ada: good morning\n● room board — live\n"
    assert "\x1b[2;3m morning" in console.export_text(styles=True)  # dim italic: may change


def test_room_url_replaces_any_path_and_quotes_the_room():
    assert room_url("ws://h:1", "board") == "ws://h:1/rooms/board"
    assert room_url("wss://h:1/some/path?x=1", "a b/c") == "wss://h:1/rooms/a%20b%2Fc"


def test_history_replay_is_deduplicated_but_a_new_utterance_is_not():
    board = CaptionBoard()
    final = {"mode": "2pass-offline", "wav_name": "mic", "speaker": "Ada", "segment": 0,
             "start": 120, "end": 900, "text": "Hello."}
    assert board.receive(final) is not None
    assert board.receive({**final, "history": True}) is None
    assert board.receive({**final, "segment": 1, "start": 1500}) is not None
    assert [c.text for c in board.finals] == ["Hello.", "Hello."]
