"""Drive a CaptionSession synchronously: bytes in, jobs run inline, events out."""

from __future__ import annotations

import json

from streaming.audio import decode_file
from streaming.errors import UnsupportedFormat
from streaming.events import StreamStarted
from streaming.session import CaptionSession
from streaming.vad import EndpointOptions


def run_jobs(session: CaptionSession) -> None:
    """What the server's runner does, inline and one job at a time."""
    while (job := session.take_job()) is not None:
        if job.kind == "online":
            (result,) = session.engine.step([job.request])
        else:
            (result,) = session.engine.finalize([job.request])
        session.complete(job, result)


def decode_upload(session: CaptionSession, now: float) -> None:
    """What the server's upload decoder does, inline: decode what the session
    accepted, hand the audio back and end the upload."""
    error = None
    if data := session.take_upload():
        try:
            session.receive_decoded(decode_file(data), now)
        except UnsupportedFormat as exc:
            error = str(exc)
    session.end_upload(now, error)


def stream_session(
    engine, pcm: bytes, frame_bytes: int = 3200, mode: str = "2pass", rate: int = 16000,
    endpoint: EndpointOptions | None = None, **config,
) -> tuple[CaptionSession, list]:
    """Stream `pcm` through a new session; return it and every event it emitted
    for the wire (the server consumes `StreamStarted` to decide admission)."""
    session = CaptionSession(engine, endpoint)
    first = {"mode": mode, "wav_name": "t", "audio_fs": rate, "chunk_size": [5, 10, 5], **config}
    session.receive_text(json.dumps(first), now=0.0)
    for i in range(0, len(pcm), frame_bytes):
        session.receive_audio(pcm[i : i + frame_bytes], now=i / (2 * rate))
        run_jobs(session)
    session.receive_text('{"is_speaking": false}', now=1e6)
    if session.upload_ended:
        decode_upload(session, now=1e6)
    run_jobs(session)
    return session, [e for e in session.events() if not isinstance(e, StreamStarted)]
