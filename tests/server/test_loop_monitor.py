"""`/health` says where the event loop's time goes (server/loop_monitor.py).

A real server on port 0 with the tiny generated models and a real client; the
monitor alone is driven by blocking its own loop with CPU work.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

from clients.client import CaptionClient
from server.loop_monitor import LoopMonitor
from tests.conftest import wav_pcm16
from tests.server.conftest import url

FRAME_BYTES = 1920  # 60 ms of 16 kHz PCM16, the FunASR client's frame


async def health(server) -> dict:
    def get() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10) as r:
            return json.loads(r.read())

    return await asyncio.to_thread(get)


async def test_health_counts_every_audio_frame_and_reports_loop_load(start_server,
                                                                    paraformer_engine):
    server = await start_server(paraformer_engine)
    before = await health(server)
    assert before["frames"] == 0 and before["frame_us"] == 0
    pcm = wav_pcm16("multi.wav")[0]
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass")
        for frame in frames:
            await client.send_audio(frame)
            await asyncio.sleep(0)
        await client.end()
        await client.collect()
    await asyncio.sleep(1.2)  # at least two monitor samples after the stream
    after = await health(server)
    assert after["frames"] == len(frames)  # text frames (config, end) are not counted
    assert after["frame_s"] > 0 and after["frame_us"] > 0
    assert abs(after["frame_us"] - 1e6 * after["frame_s"] / after["frames"]) < 1
    assert 0.0 <= after["loop_busy"] <= 1.0
    assert after["loop_cpu_s"] > before["loop_cpu_s"]  # the loop thread did the work
    assert 0.0 <= after["loop_lag_ms_p95"] <= after["loop_lag_ms_max"]
    # multi.wav's three utterances went through the final lane; each waited (for its
    # own utterance's chunks, sent faster than real time here) but none was stuck
    assert after["finals"] == 3 and 1 <= after["final_batches"] <= 3
    assert 0.0 < after["final_wait_s"] / after["finals"] < 30.0


async def test_a_blocked_loop_shows_as_busy_and_late_then_recovers():
    monitor = LoopMonitor(interval_s=0.05)
    monitor.start()
    try:
        await asyncio.sleep(0.12)  # a first sample before the block
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:  # CPU work on the loop thread, no await
            pass
        await _next_sample(monitor)
        blocked = monitor.health()
        assert blocked["loop_lag_ms_max"] >= 150  # the wakeup waited for the block
        assert monitor.busy > 0.3  # thread CPU, so a loaded machine may give less than 1
        for _ in range(4):
            await _next_sample(monitor)
        assert monitor.busy < 0.5  # sleeping is not busy
    finally:
        await monitor.stop()


async def _next_sample(monitor: LoopMonitor) -> None:
    seen = monitor.samples
    while monitor.samples == seen:
        await asyncio.sleep(0.01)
