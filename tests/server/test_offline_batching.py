"""Offline uploads over real sockets: a long file's utterances are batched in the
final pass, come back one final each with times, and an upload faster than the
model is held back by the socket instead of being refused."""

from __future__ import annotations

from clients.client import CaptionClient
from streaming.scheduler import BatchPolicy
from streaming.session import SessionLimits
from tests.conftest import wav_pcm16
from tests.server.conftest import url

REPEATS = 6  # multi.wav holds 3 sentences: 18 utterances


def long_recording() -> bytes:
    pcm, rate = wav_pcm16("multi.wav")
    assert rate == 16000
    return pcm * REPEATS


async def upload(server, pcm: bytes, frame_bytes: int = 16000) -> list[dict]:
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="offline", wav_name="long", audio_fs=16000)
        for offset in range(0, len(pcm), frame_bytes):
            await client.send_audio(pcm[offset : offset + frame_bytes])
        await client.end()
        transcript = await client.collect()
    return [m for m in transcript.finals if "segment" in m and m.get("end")]


async def test_a_long_upload_fills_final_batches_with_its_own_utterances(
        start_server, paraformer_engine):
    server = await start_server(paraformer_engine,
                                batching=BatchPolicy(max_batch_size=8, max_wait_ms=50))
    finals = await upload(server, long_recording(), frame_bytes=64000)
    assert [f["segment"] for f in finals] == list(range(3 * REPEATS))
    starts = [f["start"] for f in finals]
    assert starts == sorted(starts) and finals[-1]["end"] > (REPEATS - 1) * 11_000
    stats = server.runner.stats
    # One stream alone: before, its finals ran one per batch.
    assert stats.jobs == 3 * REPEATS and stats.batches < stats.jobs


async def test_an_upload_faster_than_the_model_is_held_back_not_refused(
        start_server, paraformer_engine):
    # Without the hold-back, 18 utterances arriving at once overflow a queue of 3.
    server = await start_server(paraformer_engine,
                                limits=SessionLimits(max_queued_jobs=3, upload_backlog_jobs=2))
    finals = await upload(server, long_recording())
    assert [f["segment"] for f in finals] == list(range(3 * REPEATS))
