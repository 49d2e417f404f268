"""`captiond serve`'s log, read from a real process: JSON lines that parse, one
line per connection end, and no caption text unless --log-transcripts."""

from __future__ import annotations

import asyncio
import json
import re
import signal

import pytest

from clients.client import CaptionClient
from tests.conftest import wav_pcm16
from tests.server.test_cli import CAPTIOND, ROOT

STREAM = "log-test-stream"


async def serve_one_stream(test_models_dir, *log_flags: str) -> tuple[str, list[str]]:
    """Run captiond, caption utt01.wav once, stop it; return its stderr and the finals."""
    process = await asyncio.create_subprocess_exec(
        *CAPTIOND, *log_flags, "serve", "--port", "0", "--device", "cpu", "--no-calibrate",
        "--workers", "1",
        "--online-model", str(test_models_dir / "paraformer-streaming"),
        "--offline-model", str(test_models_dir / "paraformer-offline"),
        "--punc-model", str(test_models_dir / "ct-punc"),
        cwd=ROOT, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    lines: list[str] = []
    try:
        while line := (await asyncio.wait_for(process.stderr.readline(), 240)).decode():
            lines.append(line)
            if match := re.search(r"captiond listening on ws://[\d.]+:(\d+)", line):
                port = int(match.group(1))
                break
        else:
            raise AssertionError("captiond exited before listening:\n" + "".join(lines))
        rest = asyncio.create_task(process.stderr.read())  # a full pipe would block it
        pcm, _ = wav_pcm16("utt01.wav")
        async with CaptionClient.connect(f"ws://127.0.0.1:{port}") as client:
            await client.start(mode="2pass", wav_name=STREAM)
            for i in range(0, len(pcm), 3200):
                await client.send_audio(pcm[i:i + 3200])
            await client.end()
            finals = [m["text"] for m in (await client.collect()).finals]
        await asyncio.sleep(0.5)  # the server logs the connection's end after the close
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    return "".join(lines) + (await rest).decode(), finals


async def test_json_log_lines_parse_and_hold_no_caption_text(test_models_dir):
    log, finals = await serve_one_stream(test_models_dir, "--log-format", "json")
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    ends = [e for e in entries if e.get("event") == "connection_end"]
    assert len(ends) == 1
    end = ends[0]
    assert end["stream"] == STREAM and end["outcome"] == "closed_by_client"
    assert end["partials"] > 0 and end["finals"] == len(finals) >= 1
    pcm, rate = wav_pcm16("utt01.wav")
    assert end["audio_s"] == pytest.approx(len(pcm) / 2 / rate, abs=0.05)
    words = [text for text in finals if text.strip()]
    assert words, "the random-weight model produced no text; the absence check would be empty"
    assert not any(text in log for text in words)
    assert "ffmpeg" not in log and "Loading pretrained params" not in log  # FunASR notices


async def test_log_transcripts_writes_the_finals_to_the_log(test_models_dir):
    log, finals = await serve_one_stream(test_models_dir, "--log-transcripts")
    assert all(text in log for text in finals if text.strip())
    assert re.search(rf"connection \d+ ended: stream={STREAM} outcome=closed_by_client", log)
