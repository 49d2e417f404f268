"""`captiond file` against a real server: transcripts in every format, pacing,
decoding, and one-line errors. Whisper tiny.en, so the text is real English."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
import time
from pathlib import Path

import av
import numpy as np
from rich.console import Console

from clients.client import CaptionClient
from clients.file import FileOptions, transcribe_file
from streaming.admission import AdmissionPolicy
from tests.conftest import DATA, references, wav_pcm16
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine
from tests.wer import wer, words

# tests/data/README.md: where the three sentences of multi.wav are spoken (s)
MULTI_SPEECH = [(0.50, 3.09), (4.29, 6.95), (8.15, 10.58)]
SRT_TIME = re.compile(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)")


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode(), err.decode()


def srt_cues(text: str) -> list[tuple[float, float, str]]:
    cues = []
    for block in text.strip().split("\n\n"):
        number, times, *lines = block.split("\n")
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, SRT_TIME.fullmatch(times).groups())
        cues.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000,
                     " ".join(lines)))
        assert number == str(len(cues))
    return cues


async def test_file_command_writes_srt_vtt_json_and_txt(start_server, whisper_engine, tmp_path):
    server = await start_server(whisper_engine)
    outputs = [tmp_path / f"meeting.{ext}" for ext in ("srt", "vtt", "json", "txt")]
    code, out, err = await run_cli("file", str(DATA / "multi.wav"), url(server), "--no-realtime",
                                   *(f"--output={path}" for path in outputs))
    assert (code, err) == (0, "")
    sentences = references()["multi.wav"]
    assert [wer(ref, line) for ref, line in zip(sentences, out.splitlines())] == [0.0] * 3

    cues = srt_cues(outputs[0].read_text())
    assert [wer(ref, text) for ref, (_, _, text) in zip(sentences, cues)] == [0.0] * 3
    for (start, end, _), (speech_start, speech_end) in zip(cues, MULTI_SPEECH):
        assert abs(start - speech_start) < 0.5 and abs(end - speech_end) < 0.5

    vtt = outputs[1].read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert vtt.count(" --> ") == 3 and "00:00:04." in vtt  # '.' before milliseconds

    document = json.loads(outputs[2].read_text())
    assert [s["segment"] for s in document["segments"]] == [0, 1, 2]
    assert wer(" ".join(sentences), document["text"]) == 0.0
    assert all(s["end"] > s["start"] for s in document["segments"])

    assert outputs[3].read_text().splitlines() == out.splitlines()


async def test_realtime_pace_streams_no_faster_than_the_audio_plays(start_server, whisper_engine,
                                                                    tmp_path):
    server = await start_server(whisper_engine)
    options = FileOptions(str(DATA / "utt01.mp3"), url(server), mode="2pass", progress=False,
                          outputs=[str(tmp_path / "utt01.txt")])
    assert options.paced  # the default for live modes
    started = time.monotonic()
    transcript = await transcribe_file(options, console=Console(file=io.StringIO()))
    assert time.monotonic() - started > 3.3  # utt01.mp3 lasts 3.42 s
    assert transcript.partials, "a real-time stream shows partials"
    assert wer(references()["utt01.wav"], (tmp_path / "utt01.txt").read_text()) == 0.0


async def test_video_files_are_decoded_to_speech(start_server, whisper_engine, tmp_path):
    server = await start_server(whisper_engine)
    video = tmp_path / "talk.mp4"
    _make_video(video, DATA / "utt03.wav")
    transcript = await transcribe_file(
        FileOptions(str(video), url(server), mode="offline", progress=False),
        console=Console(file=io.StringIO()),
    )
    assert words(transcript.text) == words(references()["utt03.wav"])


async def test_room_and_speaker_reach_the_server(start_server, tmp_path):
    server = await start_server(StrideCountingEngine())
    transcript = await transcribe_file(
        FileOptions(str(DATA / "utt01.wav"), url(server), room="board", speaker="Ada",
                    realtime=False, progress=False),
        console=Console(file=io.StringIO()),
    )
    assert {(m["room"], m["speaker"]) for m in transcript.messages} == {("board", "Ada")}


async def test_unreachable_server_is_one_line_on_stderr(unused_tcp_port):
    code, out, err = await run_cli("file", str(DATA / "utt01.wav"),
                                   f"ws://127.0.0.1:{unused_tcp_port}")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "cannot connect" in err and "refused" in err


async def test_unreadable_file_is_one_line_on_stderr(start_server, tmp_path):
    server = await start_server(StrideCountingEngine())
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio")
    code, _, err = await run_cli("file", str(bad), url(server))
    assert code == 2 and err.count("\n") == 1 and "cannot decode" in err
    code, _, err = await run_cli("file", str(DATA / "utt01.wav"), url(server), "-o", "out.docx")
    assert code == 2 and "unknown transcript format" in err


async def test_a_refused_stream_says_the_server_is_overloaded(start_server):
    server = await start_server(StrideCountingEngine(), admission=AdmissionPolicy(max_streams=1))
    pcm, _ = wav_pcm16("multi.wav")
    async with CaptionClient.connect(url(server)) as busy:  # takes the only slot
        await busy.start(mode="2pass")
        await busy.send_audio(pcm[:32000])
        while not any(c.session.live for c in server.connections):
            await asyncio.sleep(0.01)
        code, _, err = await run_cli("file", str(DATA / "utt01.wav"), url(server))
    assert code == 1 and err.count("\n") == 1
    assert "overloaded" in err and "try again later" in err


def _make_video(path: Path, wav: Path) -> None:
    """A small MPEG-4 video (black frames) with the WAV as its AAC soundtrack."""
    pcm, rate = wav_pcm16(wav.name)
    samples = np.frombuffer(pcm, "<i2")
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "mono"
        for _ in range(int(len(samples) / rate * 10)):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.rate = rate
        container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
