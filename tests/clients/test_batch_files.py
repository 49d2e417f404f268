"""`captiond file` on a folder of recordings against a real server: transcripts in
every format for the good files, bad files reported, resumable reruns, and the
same transcripts whatever `--jobs` is. Whisper tiny.en, so the text is real."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from clients.batch import _Resume
from tests.clients.test_file_client import MULTI_SPEECH, run_cli, srt_cues
from tests.conftest import DATA, references
from tests.server.conftest import url
from tests.wer import wer

GOOD = ["utt01.wav", "utt02.wav", "multi.wav", "sub/utt03.wav"]
FORMATS = ("txt", "json", "srt", "vtt")
EXIT_PARTIAL = 3


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    """Four fixtures (one in a subfolder), a corrupt WAV and a file that is not audio."""
    folder = tmp_path / "calls"
    (folder / "sub").mkdir(parents=True)
    for name in GOOD:
        shutil.copy(DATA / Path(name).name, folder / name)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(3000))
    (folder / "minutes.pdf").write_text("the minutes of the meeting, not a recording")
    return folder


def spoken(name: str) -> str:
    text = references()[Path(name).name]
    return " ".join(text) if isinstance(text, list) else text


async def test_a_folder_gives_every_format_for_good_files_and_reports_the_bad(
        start_server, whisper_engine, recordings):
    server = await start_server(whisper_engine)
    code, out, err = await run_cli("file", str(recordings), url(server), "-j", "2",
                                   "-f", "txt,json", "-f", "srt", "--format", "vtt")
    assert code == EXIT_PARTIAL, err
    for name in GOOD:
        stem = recordings / Path(name).with_suffix("")
        assert wer(spoken(name), stem.with_suffix(".txt").read_text()) == 0.0
        document = json.loads(stem.with_suffix(".json").read_text())
        assert wer(spoken(name), document["text"]) == 0.0
        cues = srt_cues(stem.with_suffix(".srt").read_text())
        assert len(cues) == len(document["segments"]) and all(a < b for a, b, _ in cues)
        assert stem.with_suffix(".vtt").read_text().startswith("WEBVTT\n\n")
    failed = [line for line in err.splitlines() if "failed:" in line]
    assert sorted(Path(line.split(": ")[2]).name for line in failed) == ["corrupt.wav",
                                                                          "minutes.pdf"]
    assert not list(recordings.glob("corrupt.*[!v]")) and not list(recordings.glob("minutes.*t"))
    assert "6 files: 4 transcribed, 0 up to date, 2 failed" in err
    assert "real time" in err.splitlines()[-1]


async def test_a_rerun_skips_finished_inputs_and_redoes_changed_or_incomplete_ones(
        start_server, whisper_engine, recordings):
    server = await start_server(whisper_engine)
    (recordings / "corrupt.wav").unlink()
    (recordings / "minutes.pdf").unlink()
    args = ("file", str(recordings), url(server), "-f", "txt,srt")
    code, _, err = await run_cli(*args)
    assert code == 0, err
    written = {path: path.stat().st_mtime_ns for path in recordings.rglob("*.srt")}

    code, _, err = await run_cli(*args)
    assert code == 0 and "4 files: 0 transcribed, 4 up to date, 0 failed" in err
    assert {path: path.stat().st_mtime_ns for path in recordings.rglob("*.srt")} == written

    (recordings / "utt02.srt").unlink()  # as if interrupted between two formats
    changed = recordings / "sub" / "utt03.wav"
    later = changed.stat().st_mtime + 60
    os.utime(changed, (later, later))  # the recording was replaced after its transcript
    code, _, err = await run_cli(*args)
    assert code == 0 and "4 files: 2 transcribed, 2 up to date, 0 failed" in err
    assert wer(spoken("utt02.wav"), (recordings / "utt02.txt").read_text()) == 0.0
    assert not list(recordings.rglob(".*.tmp"))  # no temporary files left behind


async def test_four_jobs_give_the_same_transcripts_as_one(start_server, whisper_engine,
                                                          recordings, tmp_path):
    server = await start_server(whisper_engine)
    outputs = {}
    for jobs in ("1", "4"):
        out = tmp_path / f"jobs{jobs}"
        code, _, err = await run_cli("file", f"{recordings}/**/*.wav", url(server), "-j", jobs,
                                     "--out", str(out), "-f", "json")
        assert code == EXIT_PARTIAL and "corrupt.wav" in err  # the glob matched it too
        outputs[jobs] = {p.relative_to(out): p.read_text() for p in sorted(out.rglob("*.json"))}
    assert sorted(map(str, outputs["1"])) == ["multi.json", "sub/utt03.json", "utt01.json",
                                              "utt02.json"]
    assert outputs["4"] == outputs["1"]


async def test_arguments_naming_nothing_are_reported_and_usage_errors_stop_early(
        start_server, whisper_engine, recordings):
    server = await start_server(whisper_engine)
    code, _, err = await run_cli("file", str(recordings / "utt01.wav"),
                                 str(recordings / "nothing-*.wav"), url(server))
    assert code == EXIT_PARTIAL and "nothing-*.wav: no file matches this pattern" in err
    assert (recordings / "utt01.txt").exists()
    code, _, err = await run_cli("file", str(recordings), url(server), "-f", "docx")
    assert code == 2 and "unknown format 'docx'" in err
    code, _, err = await run_cli("file", str(recordings), url(server), "--mode", "2pass")
    assert code == 2 and "offline mode" in err
    assert not (recordings / "utt02.txt").exists()


async def test_a_dropped_connection_resumes_after_the_last_final_received(
        start_server, whisper_engine, tmp_path):
    """A relay between client and server cuts the first connection right after
    it passed on the first final; the client resumes the file after it."""
    server = await start_server(whisper_engine)
    connections = []

    async def relay(downstream):
        first = not connections
        connections.append(downstream)
        async with connect(url(server), subprotocols=["binary"], max_size=None) as upstream:
            async def to_client():
                async for message in upstream:
                    await downstream.send(message)
                    if first and json.loads(message).get("text"):
                        await downstream.close(1001)  # dropped after one final

            async def to_server():
                async for message in downstream:
                    await upstream.send(message)

            tasks = [asyncio.create_task(to_client()), asyncio.create_task(to_server())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()

    async with serve(relay, "127.0.0.1", 0, max_size=None) as proxy:
        port = proxy.sockets[0].getsockname()[1]
        code, _, err = await run_cli("file", str(DATA / "multi.wav"), f"ws://127.0.0.1:{port}",
                                     "--out", str(tmp_path), "-f", "json")
    assert code == 0, err
    assert len(connections) == 2
    document = json.loads((tmp_path / "multi.json").read_text())
    assert wer(spoken("multi.wav"), document["text"]) == 0.0
    assert [s["segment"] for s in document["segments"]] == [0, 1, 2]
    for segment, (speech_start, speech_end) in zip(document["segments"], MULTI_SPEECH):
        assert abs(segment["start"] / 1000 - speech_start) < 0.5
        assert abs(segment["end"] / 1000 - speech_end) < 0.5


def test_a_resumed_stream_continues_the_file_time_line():
    resume = _Resume()
    first = [{"mode": "offline", "segment": i, "start": 1000 * i, "end": 1000 * i + 800,
              "text": f"one {i}"} for i in range(2)]
    assert [resume.receive(m) for m in first] == [0.8, 1.8]
    resume.restart()  # the connection dropped: the next stream starts at 1.8 s of the file
    assert resume.receive({"mode": "offline", "segment": 0, "start": 200, "end": 900,
                           "text": "two"}) == pytest.approx(2.7)
    assert [(f["segment"], f["start"], f["end"]) for f in resume.finals] == [
        (0, 0, 800), (1, 1000, 1800), (2, 2000, 2700)]
