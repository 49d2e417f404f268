"""Real speech end to end over sockets with the real Whisper tiny.en weights.

The streamed finals must be within 5 WER points of offline faster-whisper on
the same audio, one final per utterance, with monotonic times and committed
(stable) text that is never retracted.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import references, wav_pcm16
from tests.server.test_streaming_contract import transcribe
from tests.wer import wer

pytestmark = pytest.mark.e2e

UTTERANCES = ["utt01.wav", "utt02.wav", "utt03.wav", "utt04.wav", "utt05.wav"]
WER_SLACK = 0.05


def offline_whisper(engine, name: str) -> str:
    audio = np.frombuffer(wav_pcm16(name)[0], "<i2").astype(np.float32) / 32768
    segments, _ = engine.model.transcribe(audio, language="en", beam_size=5)
    return " ".join(segment.text for segment in segments)


@pytest.fixture
async def whisper_server(start_server, whisper_engine):
    return await start_server(whisper_engine)


@pytest.mark.parametrize("name", UTTERANCES)
async def test_streamed_final_is_as_good_as_offline_whisper(whisper_server, whisper_engine,
                                                            name):
    result = await transcribe(whisper_server, wav_pcm16(name)[0], mode="2pass")
    reference = references()[name]
    ceiling = wer(reference, offline_whisper(whisper_engine, name))
    assert len(result.finals) == 1
    assert wer(reference, result.text) <= ceiling + WER_SLACK
    stables = [m["stable"] for m in result.partials]
    assert all(b.startswith(a) for a, b in zip(stables, stables[1:]))  # never retracted


async def test_multi_utterance_stream_gives_one_final_per_utterance(whisper_server):
    result = await transcribe(whisper_server, wav_pcm16("multi.wav")[0], mode="2pass")
    expected = references()["multi.wav"]
    assert len(result.finals) == len(expected)
    for final, sentence in zip(result.finals, expected, strict=True):
        assert wer(sentence, final["text"]) <= WER_SLACK
    times = [t for final in result.finals for t in (final["start"], final["end"])]
    assert times == sorted(times)
    for segment in range(len(expected)):
        stables = [m["stable"] for m in result.partials if m["segment"] == segment]
        assert all(b.startswith(a) for a, b in zip(stables, stables[1:]))
