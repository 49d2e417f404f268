"""Engine results → caption events (docs/design.md §4).

The session hands each finished job here; what comes back is the event the
client gets, with times made relative to the stream start and the FunASR wire
mode (`wire_mode`, the one place it is computed) filled in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from streaming.config import StreamConfig
from streaming.engine import SAMPLE_RATE, ChunkResult, FinalResult
from streaming.events import Final, Partial, StreamEnd
from streaming.jobs import FinalJob, JobKind, OnlineJob


def wire_mode(stream_mode: str, kind: JobKind) -> str:
    """The `mode` field of a message: a stream's own mode, except that 2pass
    streams say which pass a message is from ("2pass-online" partials,
    "2pass-offline" finals; the closing message counts as a final)."""
    if stream_mode != "2pass":
        return stream_mode
    return "2pass-online" if kind is JobKind.ONLINE else "2pass-offline"


def partial_event(
    job: OnlineJob, result: ChunkResult, render: Callable[[Sequence[str]], str]
) -> Partial | None:
    """Record the chunk's tokens on its utterance; the partial to send, if any."""
    utterance = job.utterance
    utterance.engine_state = result.state
    utterance.committed.extend(result.committed)
    changed = bool(result.committed) or result.tentative != utterance.tentative
    utterance.tentative = result.tentative
    last = job.request.is_last
    if not (changed or last):
        return None  # no flicker: nothing new to show
    return Partial(
        mode=wire_mode(utterance.config.mode, JobKind.ONLINE),
        wav_name=utterance.config.wav_name,
        segment=utterance.segment,
        text=render(result.committed),
        stable=render(utterance.committed),
        unstable=render(utterance.tentative),
        start_ms=_ms(utterance.start),
        end_ms=_ms(utterance.speech_end if last else job.end),
        final=last,
        end_of_stream=last and utterance.end_of_stream,
    )


def final_event(job: FinalJob, result: FinalResult) -> Final:
    utterance = job.utterance
    offset = _ms(utterance.start)
    return Final(
        mode=wire_mode(utterance.config.mode, JobKind.FINAL),
        wav_name=utterance.config.wav_name,
        segment=utterance.segment,
        text=result.text,
        start_ms=offset,
        end_ms=_ms(utterance.speech_end),
        token_spans_ms=_shift(result.token_spans_ms, offset),
        sentences=tuple(
            replace(s, start_ms=s.start_ms + offset, end_ms=s.end_ms + offset,
                    token_spans_ms=_shift(s.token_spans_ms, offset))
            for s in result.sentences
        ),
        end_of_stream=utterance.end_of_stream,
    )


def stream_end_event(config: StreamConfig) -> StreamEnd:
    """Closes a stream that ended with no utterance open (empty text)."""
    return StreamEnd(wire_mode(config.mode, JobKind.FINAL), config.wav_name)


def _shift(spans: Sequence[tuple[int, int]], offset: int) -> tuple[tuple[int, int], ...]:
    return tuple((a + offset, b + offset) for a, b in spans)


def _ms(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE
