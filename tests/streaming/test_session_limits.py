"""The core's end acknowledgement and per-stream limits, driven synchronously with
a fake clock (docs/security.md): no sockets, no sleeps."""

from __future__ import annotations

import json

import pytest

from streaming.config import parse_config
from streaming.errors import MESSAGE_TOO_BIG, POLICY_VIOLATION
from streaming.events import EndAcknowledged, Error, Final, StreamEnd, StreamStarted
from streaming.session import CaptionSession, SessionLimits
from tests.conftest import wav_pcm16
from tests.session_driver import run_jobs
from tests.streaming.engine_double import StrideCountingEngine

SECOND = 32000  # bytes of 16 kHz PCM16


@pytest.fixture(scope="module")
def multi() -> bytes:
    return wav_pcm16("multi.wav")[0]


def feed(session: CaptionSession, pcm: bytes, start: float, pace: float) -> None:
    """100 ms frames; frame i arrives at start + i * 0.1 * pace (pace 1: real time)."""
    for n, i in enumerate(range(0, len(pcm), 3200)):
        session.receive_audio(pcm[i:i + 3200], now=start + n * 0.1 * pace)
        run_jobs(session)


def wire(session: CaptionSession) -> list:
    return [e for e in session.events() if not isinstance(e, StreamStarted)]


@pytest.mark.parametrize("mode", ["2pass", "online", "offline"])
def test_end_with_is_end_is_acknowledged_after_the_last_final(multi, mode):
    session = CaptionSession(StrideCountingEngine())
    session.receive_text(json.dumps({"mode": mode, "wav_name": "w"}), now=0.0)
    feed(session, multi, 0.0, pace=1.0)
    session.receive_text('{"is_speaking": false, "is_end": true}', now=20.0)
    before_jobs = wire(session)
    assert not any(isinstance(e, EndAcknowledged) for e in before_jobs)  # finals still due
    run_jobs(session)
    events = before_jobs + wire(session)
    assert events[-1] == EndAcknowledged(mode, "w")
    closing = events[-2]  # the stream's closing message comes just before
    assert isinstance(closing, StreamEnd) or closing.end_of_stream


def test_engine_failure_acknowledges_with_the_error_then_closes(multi):
    session = CaptionSession(StrideCountingEngine())
    session.receive_text('{"mode": "offline", "wav_name": "w"}', now=0.0)
    feed(session, multi[: 3 * SECOND], 0.0, pace=1.0)
    session.receive_text('{"is_speaking": false, "is_end": true}', now=5.0)
    job = session.take_job()
    session.fail(job, "recognition failed on the server")
    ack, error = wire(session)[-2:]
    assert ack == EndAcknowledged("offline", "w", "recognition failed on the server")
    assert isinstance(error, Error) and error.close_code == 1011


def test_live_audio_may_run_ahead_of_the_clock_only_so_far(multi):
    limits = SessionLimits(max_audio_ahead_s=2.0)
    paced = CaptionSession(StrideCountingEngine(), limits=limits)
    paced.receive_text('{"mode": "2pass"}', now=0.0)
    feed(paced, multi, 0.0, pace=1.0)
    assert not [e for e in wire(paced) if isinstance(e, Error)]
    flooding = CaptionSession(StrideCountingEngine(), limits=limits)
    flooding.receive_text('{"mode": "2pass"}', now=0.0)
    feed(flooding, multi, 0.0, pace=0.5)  # twice real time: 2 s ahead after 4 s of audio
    (error,) = [e for e in wire(flooding) if isinstance(e, Error)]
    assert (error.code, error.close_code) == ("faster_than_real_time", POLICY_VIOLATION)


def test_stream_duration_cap_finalises_what_was_accepted(multi):
    session = CaptionSession(StrideCountingEngine(), limits=SessionLimits(max_stream_s=4.0))
    session.receive_text('{"mode": "2pass"}', now=0.0)
    feed(session, multi, 0.0, pace=1.0)
    run_jobs(session)
    events = wire(session)
    errors = [e for e in events if isinstance(e, Error)]
    assert [(e.code, e.close_code) for e in errors] == [("stream_too_long", POLICY_VIOLATION)]
    assert [e for e in events if isinstance(e, Final)]  # the accepted speech still ends in finals


def test_hotword_count_is_the_sessions_limit():
    session = CaptionSession(StrideCountingEngine(), limits=SessionLimits(max_hotwords=2))
    session.receive_text('{"mode": "2pass", "hotwords": "a,b,c"}', now=0.0)
    (error,) = wire(session)
    assert (error.code, error.close_code) == ("too_many_hotwords", MESSAGE_TOO_BIG)


def test_funasr_hotword_and_format_forms_are_accepted():
    config = parse_config({"hotwords": "阿里巴巴,达摩院, machine learning ",
                           "wav_format": "others"})
    assert dict(config.hotwords) == {"阿里巴巴": 20, "达摩院": 20, "machine learning": 20}
    assert config.encoded
    assert dict(parse_config({"hotwords": "alpha beta"}).hotwords) == {"alpha": 20, "beta": 20}
