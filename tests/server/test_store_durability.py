"""`captiond serve` killed with SIGKILL loses no final it had sent, and a
restart keeps the transcript (docs/transcripts.md, docs/design.md §8)."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

from clients.client import CaptionClient
from tests.conftest import wav_pcm16
from tests.server.test_cli import CAPTIOND, ROOT, _listening_port
from tests.server.test_streaming_contract import send_frames


async def start_captiond(models, store, extra: list[str] = ()
                         ) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        *CAPTIOND, "serve", "--port", "0", "--device", "cpu", "--no-calibrate",
        "--online-model", str(models / "paraformer-streaming"),
        "--offline-model", str(models / "paraformer-offline"),
        "--punc-model", str(models / "ct-punc"), "--store", str(store), *extra,
        cwd=ROOT, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    return process, await asyncio.wait_for(_listening_port(process), timeout=180)


async def test_sigkill_right_after_a_final_loses_nothing_that_was_sent(test_models_dir,
                                                                        tmp_path):
    store = tmp_path / "rooms.sqlite3"
    process, port = await start_captiond(test_models_dir, store)
    received = []
    try:
        async with CaptionClient.connect(f"ws://127.0.0.1:{port}") as client:
            await client.start(mode="2pass", room="crash", speaker="Ada")
            await send_frames(client, wav_pcm16("multi.wav")[0], 3200)
            async for message in client.messages():
                if message["mode"] == "2pass-offline":
                    received.append(message)
                    if len(received) == 2:  # mid-stream, the moment a final arrived
                        process.send_signal(signal.SIGKILL)
                        break
    finally:
        process.kill()
        await process.wait()

    process, port = await start_captiond(test_models_dir, store)
    try:
        url = f"http://127.0.0.1:{port}/rooms/crash/transcript.json"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
    kept = {f["id"]: f for f in json.loads(body)["finals"]}
    assert [m["id"] for m in received] == [1, 2]
    for message in received:
        assert kept[message["id"]]["text"] == message["text"]
        assert kept[message["id"]]["speaker"] == "Ada"
