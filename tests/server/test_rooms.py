"""Rooms over real sockets: speakers publish, read-only viewers see everything."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect

from clients.client import CaptionClient
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.server.test_streaming_contract import send_frames, transcribe
from tests.streaming.engine_double import StrideCountingEngine


async def viewer_messages(server, room: str, until_finals: int) -> list[dict]:
    messages = []
    async with connect(url(server, f"/rooms/{room}")) as ws:
        while sum(is_final(m) for m in messages) < until_finals:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    return messages


def is_final(message: dict) -> bool:
    return message["mode"].endswith("offline") and "segment" in message


async def started_viewer(server, room: str, until_finals: int) -> asyncio.Task:
    task = asyncio.create_task(viewer_messages(server, room, until_finals))
    while server.rooms.viewer_count() == 0:
        await asyncio.sleep(0.01)
    return task


async def test_viewer_sees_the_speakers_partials_and_finals(start_server):
    server = await start_server(StrideCountingEngine())
    viewer = await started_viewer(server, "board", until_finals=3)
    pcm, _ = wav_pcm16("multi.wav")
    spoken = await transcribe(server, pcm, room="board", speaker="Ada")
    seen = await viewer
    assert seen == spoken.messages  # the same messages, in the same order
    assert all(m["room"] == "board" and m["speaker"] == "Ada" for m in seen)
    assert any(m["mode"] == "2pass-online" for m in seen)


async def test_late_viewer_catches_up_on_recent_finals(start_server):
    server = await start_server(StrideCountingEngine())
    pcm, _ = wav_pcm16("multi.wav")
    spoken = await transcribe(server, pcm, room="late", speaker="Ada")
    seen = await viewer_messages(server, "late", until_finals=3)
    assert all(m["history"] is True for m in seen)
    assert [m["text"] for m in seen] == [m["text"] for m in spoken.finals]


async def test_speakers_are_told_apart_in_one_room(start_server):
    server = await start_server(StrideCountingEngine())
    viewer = await started_viewer(server, "panel", until_finals=2)
    pcm, _ = wav_pcm16("utt01.wav")
    await asyncio.gather(
        transcribe(server, pcm, room="panel", speaker="Ada"),
        transcribe(server, pcm, room="panel", speaker="Grace"),
    )
    seen = await viewer
    assert {m["speaker"] for m in seen if is_final(m)} == {"Ada", "Grace"}


async def test_a_speaker_who_drops_mid_utterance_still_reaches_the_room(start_server):
    server = await start_server(StrideCountingEngine())
    viewer = await started_viewer(server, "drop", until_finals=1)
    pcm, _ = wav_pcm16("utt01.wav")
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass", room="drop", speaker="Ada")
        await send_frames(client, pcm[: len(pcm) // 2], 3200)
    (final,) = [m for m in await viewer if is_final(m)]
    assert final["speaker"] == "Ada" and final["text"]


async def test_room_names_are_validated(start_server):
    server = await start_server(StrideCountingEngine())
    async with connect(url(server)) as ws:
        await ws.send(json.dumps({"room": "../etc"}))
        reply = json.loads(await ws.recv())
    assert reply["code"] == "invalid_config" and "room" in reply["error"]


@pytest.mark.parametrize("path", ["/nothing-here", "/static/../server/app.py",
                                  "/static/%2e%2e/server/app.py"])
async def test_unknown_and_escaping_paths_are_not_served(start_server, path):
    server = await start_server(StrideCountingEngine())
    address = f"http://127.0.0.1:{server.port}{path}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, address, timeout=5)
    assert refused.value.code == 404
    refused.value.close()
