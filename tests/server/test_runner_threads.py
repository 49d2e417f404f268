"""While a final pass runs, the online lane steps on the cores the final lane
leaves (server/runner.py): both lanes' torch threads on the same cores make each
OpenMP barrier wait for a thread that is not running (docs/workers.md)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

from clients.client import CaptionClient
from streaming.engine import ChunkRequest, ChunkResult, FinalRequest, FinalResult
from tests.conftest import wav_pcm16
from tests.server.conftest import url

FRAME_BYTES = 1920  # 60 ms of 16 kHz PCM16, a FunASR client's frame


class ThreadRecordingEngine:
    """The real Paraformer engine, noting torch's thread count at each online
    step; a final pass waits (a few seconds at most) for one online step to run
    beside it, so that the test sees one."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.steps: list[tuple[bool, int]] = []  # (a final pass running, torch threads)
        self._final_running = threading.Event()
        self._stepped_beside = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def step(self, batch: Sequence[ChunkRequest]) -> list[ChunkResult]:
        beside = self._final_running.is_set()
        self.steps.append((beside, torch.get_num_threads()))
        if beside:
            self._stepped_beside.set()
        return self.engine.step(batch)

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        self._final_running.set()
        try:
            self._stepped_beside.wait(timeout=5)
            return self.engine.finalize(batch)
        finally:
            self._final_running.clear()


async def test_an_online_step_beside_a_final_pass_leaves_it_the_final_lanes_cores(
        start_server, paraformer_engine):
    engine = ThreadRecordingEngine(paraformer_engine)
    server = await start_server(engine, threads=2)  # the final lane: half, 1
    pcm, _ = wav_pcm16("multi.wav")  # three sentences: finals while the next is spoken
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass")
        for offset in range(0, len(pcm), FRAME_BYTES):
            await client.send_audio(pcm[offset : offset + FRAME_BYTES])
        await client.end()
        transcript = await client.collect()
    assert len(transcript.finals) >= 2
    # The runner decides as it hands a step over; a final that starts or ends
    # while the step waits for the lane is the few steps at each boundary.
    assert engine.steps[0] == (False, 2), "the first steps, before any final: all cores"
    first_beside = engine.steps.index((True, 1))  # ValueError: never lent
    assert (False, 2) in engine.steps[first_beside:], "the lane never got its cores back"
