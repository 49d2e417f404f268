"""Admission control over real sockets: the stream over capacity is refused
with 1013 and the admitted ones keep real time."""

from __future__ import annotations

import asyncio
import time

import pytest

from clients.client import CaptionClient, ServerError
from streaming.admission import AdmissionPolicy
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine

FRAME_S = 0.1


class CostlyEngine(StrideCountingEngine):
    """The engine double with a known compute cost: a batch of b chunks takes
    FIXED_S + PER_CHUNK_S * b, so capacity is known in advance:
    (0.03 + 0.06 b) / 0.6 <= 0.8  ->  b <= 7 streams."""

    FIXED_S, PER_CHUNK_S = 0.03, 0.06

    def step(self, batch):
        time.sleep(self.FIXED_S + self.PER_CHUNK_S * len(batch))
        return super().step(batch)


async def live_stream(server, pcm: bytes) -> float:
    """Stream at real-time pace; return how long the final took after the end."""
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass")
        frame = int(32000 * FRAME_S)
        for i in range(0, len(pcm), frame):
            await client.send_audio(pcm[i : i + frame])
            await asyncio.sleep(FRAME_S)
        await client.end()
        ended = time.monotonic()
        await client.collect()
        return time.monotonic() - ended


async def test_stream_over_measured_capacity_is_refused_and_others_keep_real_time(start_server):
    server = await start_server(CostlyEngine(), calibrate=True,
                                admission=AdmissionPolicy(target_utilization=0.8))
    assert server.admission.capacity() == 7
    pcm, _ = wav_pcm16("utt01.wav")
    admitted = [asyncio.create_task(live_stream(server, pcm)) for _ in range(7)]
    while sum(c.session.live for c in server.connections) < 7:
        await asyncio.sleep(0.01)
    async with CaptionClient.connect(url(server)) as extra:
        await extra.start(mode="2pass")
        with pytest.raises(ServerError) as refused:
            await extra.collect()
    assert refused.value.code == "overloaded" and refused.value.close_code == 1013
    assert "capacity" in refused.value.message
    final_delays = await asyncio.gather(*admitted)
    assert max(final_delays) < 1.5  # nobody fell behind real time


async def test_offline_uploads_do_not_count_as_live_streams(start_server):
    server = await start_server(StrideCountingEngine(), admission=AdmissionPolicy(max_streams=1))
    data = wav_pcm16("utt02.wav")[0]
    async with CaptionClient.connect(url(server)) as live:
        await live.start(mode="2pass")  # the one live stream allowed
        while not any(c.session.live for c in server.connections):
            await asyncio.sleep(0.01)
        async with CaptionClient.connect(url(server)) as client:
            await client.start(mode="offline")
            await client.send_audio(data)
            await client.end()
            result = await client.collect()
    assert len(result.finals) == 1


async def test_live_batches_teach_the_capacity_model_without_calibration(start_server):
    server = await start_server(CostlyEngine())  # calibrate=False: nothing measured yet
    assert server.admission.capacity() is None
    pcm, _ = wav_pcm16("utt01.wav")
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass")
        await client.send_audio(pcm)
        await client.end()
        await client.collect()
    # Batches of one chunk cost at least (0.03 + 0.06) / 0.6 = 0.15 per second of
    # audio (sleep never undershoots), so at most 5 streams fit under 0.8.
    assert 1 <= server.admission.capacity() <= 5
    assert server.admission.meter.utilization(asyncio.get_running_loop().time()) > 0
