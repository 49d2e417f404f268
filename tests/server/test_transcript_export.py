"""Transcript exports over HTTP on the captiond port (docs/transcripts.md),
parsed with strict parsers and compared with the store."""

from __future__ import annotations

import asyncio
import html
import json
import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
import srt
import webvtt

from server import export
from server.auth import AccessPolicy, parse_token_spec
from server.config import RoomOptions
from server.store import StoredFinal, StreamInfo
from tests.conftest import wav_pcm16
from tests.server.test_streaming_contract import transcribe
from tests.streaming.engine_double import StrideCountingEngine


async def fetch(server, path: str) -> tuple[str, str]:
    def get():
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as r:
            return r.read().decode("utf-8"), r.headers["Content-Type"]
    return await asyncio.to_thread(get)


@pytest.fixture
async def meeting(start_server, tmp_path):
    """A room where two speakers said three things each, one after the other."""
    server = await start_server(StrideCountingEngine(),
                                rooms=RoomOptions(store=str(tmp_path / "t.sqlite3")))
    pcm, _ = wav_pcm16("multi.wav")
    for speaker in ["Ada", "Grace"]:
        await transcribe(server, pcm, room="meet", speaker=speaker)
    return server


async def test_json_export_matches_the_store(meeting):
    body, content_type = await fetch(meeting, "/rooms/meet/transcript.json")
    exported = json.loads(body)
    stored = await meeting.rooms.store.finals("meet")
    assert content_type.startswith("application/json")
    assert [(f["id"], f["speaker"], f["text"], f["sentences"]) for f in exported["finals"]] == \
        [(f.id, f.speaker, f.text, f.sentences) for f in stored]
    for final, exported_final in zip(stored, exported["finals"]):
        on_timeline = final.stream.started_at - exported["origin"] + final.start_ms / 1000
        assert exported_final["start"] == pytest.approx(on_timeline, abs=0.001)
        assert exported_final["start"] >= 0


async def test_srt_and_vtt_parse_strictly_and_hold_every_final_in_order(meeting):
    stored = await meeting.rooms.store.finals("meet")
    srt_body, srt_type = await fetch(meeting, "/rooms/meet/transcript.srt")
    vtt_body, vtt_type = await fetch(meeting, "/rooms/meet/transcript.vtt")
    subtitles = list(srt.parse(srt_body, ignore_errors=False))
    captions = webvtt.from_string(vtt_body).captions
    assert srt_type.startswith("application/x-subrip") and vtt_type.startswith("text/vtt")
    # one sentence per final here; cues in time order, as players expect
    expected = sorted(f"{f.speaker}: {f.text}" for f in stored)
    assert sorted(s.content for s in subtitles) == expected
    assert sorted(f"{c.voice}: {html.unescape(c.text)}" for c in captions) == expected
    assert [s.start for s in subtitles] == sorted(s.start for s in subtitles)
    for subtitle, caption in zip(subtitles, captions):
        assert timedelta(0) <= subtitle.start < subtitle.end
        assert (caption.start, caption.end) == (vtt_time(subtitle.start), vtt_time(subtitle.end))
        assert caption.text == html.escape(subtitle.content.split(": ", 1)[1], quote=False)


def vtt_time(at: timedelta) -> str:
    return srt.timedelta_to_srt_timestamp(at).replace(",", ".")


async def test_one_stream_and_a_time_range_export_only_that(meeting):
    stored = await meeting.rooms.store.finals("meet")
    grace = stored[-1].stream.key
    body, _ = await fetch(meeting, f"/rooms/meet/streams/{grace}/transcript.json")
    assert [f["id"] for f in json.loads(body)["finals"]] == [4, 5, 6]
    whole = json.loads((await fetch(meeting, "/rooms/meet/transcript.json"))[0])["finals"]
    by_time = sorted(whole, key=lambda f: f["start"])
    since, until = by_time[1]["end"], by_time[4]["start"] + 0.001
    inside = [f for f in whole if f["end"] > since and f["start"] < until]
    assert 0 < len(inside) < len(whole)
    body, _ = await fetch(meeting, f"/rooms/meet/transcript.json?from={since}&to={until}")
    assert [f["id"] for f in json.loads(body)["finals"]] == [f["id"] for f in inside]
    text, _ = await fetch(meeting, f"/rooms/meet/transcript.txt?from={since}&to={until}")
    assert [line.split("] ", 1)[1] for line in text.splitlines()] == \
        [f"{f['speaker']}: {f['text']}" for f in inside]


@pytest.mark.parametrize("path", ["/rooms/meet/streams/0123456789ab/transcript.srt",
                                  "/rooms/meet/transcript.json?from=soon"])
async def test_unknown_streams_and_bad_ranges_are_refused(meeting, path):
    with pytest.raises(urllib.error.HTTPError) as refused:
        await fetch(meeting, path)
    assert refused.value.code in (400, 404)
    refused.value.close()


def stored_final(text: str, start_ms: int, end_ms: int, sentences=()) -> StoredFinal:
    stream = StreamInfo("abc", "Ada <&>", "mic", 1000.0)
    return StoredFinal("r", 1, stream, text, start_ms, end_ms, list(sentences), {}, 1000.0)


def test_vtt_text_and_speaker_are_escaped():
    final = stored_final("a < b && c --> d <i>", 0, 2000)
    body = export.to_vtt([final], origin=1000.0)
    (caption,) = webvtt.from_string(body).captions
    assert "<i>" not in body and "-->" not in body.split("\n", 3)[3]
    assert html.unescape(caption.text) == "a < b && c --> d <i>"
    assert html.unescape(re.search(r"<v ([^>]*)>", body)[1]) == "Ada <&>"


def test_long_sentences_are_split_into_cues_players_can_show():
    words = " ".join(f"word{i}" for i in range(60))  # ~400 characters over 30 s
    sentences = [{"text_seg": "Short one", "punc": ".", "start": 0, "end": 1500},
                 {"text_seg": words, "punc": ".", "start": 1500, "end": 31500}]
    final = stored_final("Short one. " + words + ".", 0, 31500, sentences)
    cues = export.cues([final], origin=1000.0)
    assert cues[0].text == "Short one." and cues[0].end_s == pytest.approx(1.5)
    assert all(len(c.text) <= export.MAX_CUE_CHARS for c in cues)
    assert all(c.end_s - c.start_s <= export.MAX_CUE_SECONDS + 1e-9 for c in cues)
    assert " ".join(c.text for c in cues[1:]) == words + "."
    assert cues[-1].end_s == pytest.approx(31.5)
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in zip(cues, cues[1:]))


def test_text_without_spaces_is_split_too():
    text = "字" * 200
    cues = export.cues([stored_final(text, 0, 6000)], origin=1000.0)
    assert "".join(c.text for c in cues) == text
    assert all(len(c.text) <= export.MAX_CUE_CHARS for c in cues)


async def test_exports_follow_the_rooms_viewer_rights(start_server):
    policy = AccessPolicy(tokens=(parse_token_spec("speaker-secret:speaker"),
                                  parse_token_spec("watch-hall:viewer:hall")),
                          public_rooms=frozenset({"lobby"}))
    server = await start_server(StrideCountingEngine(), access=policy)
    pcm, _ = wav_pcm16("utt01.wav")
    for room in ["hall", "lobby", "board"]:
        await transcribe(server, pcm, room=room, speaker="Ada", token="speaker-secret")

    async def status(path: str) -> int:
        try:
            await fetch(server, path)
        except urllib.error.HTTPError as refused:
            refused.close()
            return refused.code
        return 200

    assert await status("/rooms/lobby/transcript.txt") == 200  # public
    assert await status("/rooms/hall/transcript.txt") == 401  # no token
    assert await status("/rooms/hall/transcript.txt?token=watch-hall") == 200
    assert await status("/rooms/board/transcript.srt?token=watch-hall") == 403  # not its room
    assert await status("/rooms/board/transcript.srt?token=wrong-secret") == 401
