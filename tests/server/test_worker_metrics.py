"""/metrics with --workers 2: any worker answers with its own connection figures
and the engine process's batch figures, pushed to it (docs/operations.md)."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from clients.client import CaptionClient
from server.frontend import WORKER_HEADER
from tests.conftest import wav_pcm16
from tests.server.test_streaming_contract import send_frames
from tests.server.test_workers import workers_server, ws_url
from tests.streaming.engine_double import StrideCountingEngine


def scrape(server) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
        worker = reply.headers[WORKER_HEADER]
    names = [f.name for f in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)), "a metric family appears twice"
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
               if not s.labels or s.name.endswith("_count")}
    return {**samples, "worker": worker}


async def test_any_worker_shows_the_engine_figures_after_a_stream():
    async with workers_server(StrideCountingEngine()) as server:
        before = await asyncio.to_thread(scrape, server)
        while "captiond_chunks_total" not in before:  # the engine's first push: 0.5 s
            await asyncio.sleep(0.2)
            before = await asyncio.to_thread(scrape, server)
        assert before["captiond_chunks_total"] == 0 and before["captiond_ready"] == 1
        pcm, _ = wav_pcm16("utt01.wav")
        async with CaptionClient.connect(ws_url(server)) as client:
            await client.start(mode="2pass")
            await send_frames(client, pcm, 3200)
            await client.end()
            await client.collect()
        shown = {}  # worker -> its latest scrape; the kernel picks who answers
        async with asyncio.timeout(30):
            while len(shown) < 2 or any(s.get("captiond_chunks_total", 0) == 0
                                        for s in shown.values()):
                after = await asyncio.to_thread(scrape, server)  # pushed every 0.5 s
                shown[after["worker"]] = after
        assert all(s["captiond_engine_step_seconds_count"] > 0 for s in shown.values())
        assert all(s["captiond_partial_delay_seconds_count"] == s["captiond_chunks_total"]
                   for s in shown.values())
