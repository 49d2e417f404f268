"""The caption session: one client connection's state machine, free of I/O.

Theory of operation
-------------------
The server feeds a session what the client sent (`receive_text`,
`receive_audio`) with the current clock value, and takes back two things:
*jobs* for the model (`take_job`, answered with `complete`/`fail`) and
*events* for the wire (`events`). Nothing here sleeps, reads a clock or
touches a socket (DESIGN §2).

Audio path: PCM16 → float → resample to 16 kHz → 30 ms VAD frames →
`EndpointDetector` → utterances. While an utterance is open its audio is cut
into the engine's strides (online jobs, for partials); when it ends the whole
utterance becomes a final job (2pass/offline). Jobs of one session run one at
a time, in order, so partials of an utterance always precede its final and a
stream's closing message is always last.

States: AWAIT_CONFIG --config--> STREAMING --is_speaking:false--> AWAIT_CONFIG
(queued jobs still finish; a new config may start the next stream at once);
any client error --> CLOSED.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from streaming.audio import StreamResampler, decode_file, pcm16_to_float
from streaming.config import StreamConfig, parse_config, parse_message
from streaming.engines.base import (
    SAMPLE_RATE,
    ChunkRequest,
    ChunkResult,
    Engine,
    FinalRequest,
    FinalResult,
)
from streaming.errors import (
    INTERNAL_ERROR,
    POLICY_VIOLATION,
    AudioBeforeConfig,
    ClientError,
    InvalidAudio,
    Overloaded,
    TooBig,
)
from streaming.events import Error, Event, Final, Partial, StreamEnd, StreamStarted
from streaming.history import AudioHistory
from streaming.vad import (
    FRAME_SAMPLES,
    EndpointDetector,
    EndpointOptions,
    FrameClassifier,
    SpeechEnded,
    SpeechStarted,
)


class SessionState(enum.Enum):
    AWAIT_CONFIG = "await_config"
    STREAMING = "streaming"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionLimits:
    max_frame_bytes: int = 4 * 1024 * 1024  # DESIGN §8: huge frames are refused (1009)
    max_file_bytes: int = 200 * 1024 * 1024  # a whole encoded upload (offline files)
    max_queued_jobs: int = 400  # ~4 min of audio waiting for the model: we are overloaded


@dataclass
class Utterance:
    """One utterance of one stream; jobs keep a reference, so a new stream may
    start on the connection while the previous one's jobs are still running."""

    config: StreamConfig
    segment: int
    start: int  # samples since stream start, pre-roll included
    engine_state: Any = None
    consumed: int = 0  # audio handed to the online pass so far (absolute sample)
    committed: list[str] = field(default_factory=list)
    tentative: tuple[str, ...] = ()
    end: int | None = None
    speech_end: int | None = None
    end_of_stream: bool = False


@dataclass
class OnlineJob:
    utterance: Utterance
    request: ChunkRequest
    end: int  # absolute sample the chunk reaches
    ready_at: float
    kind = "online"


@dataclass
class FinalJob:
    utterance: Utterance
    request: FinalRequest
    ready_at: float
    kind = "final"


@dataclass
class _EndMarker:
    """Queued at end of stream with no open utterance: emits the closing message."""

    config: StreamConfig


Job = OnlineJob | FinalJob


class _Stream:
    """Per-stream audio front end: resampling, VAD framing, the kept history."""

    def __init__(self, config: StreamConfig, endpoint: EndpointOptions, stride: int) -> None:
        self.config = config
        self.stride = stride
        self.resampler = StreamResampler(config.audio_fs)
        self.classifier = FrameClassifier(endpoint.aggressiveness)
        self.detector = EndpointDetector(endpoint)
        self.pre_roll = endpoint.pre_roll_ms * SAMPLE_RATE // 1000
        self.history = AudioHistory()
        self.frame_tail = np.zeros(0, dtype=np.float32)
        self.encoded = bytearray()
        self.utterance: Utterance | None = None
        self.next_segment = 0


class CaptionSession:
    def __init__(
        self,
        engine: Engine,
        endpoint: EndpointOptions | None = None,
        limits: SessionLimits | None = None,
        now: float = 0.0,
    ) -> None:
        self.engine = engine
        self.endpoint = endpoint or EndpointOptions()
        self.limits = limits or SessionLimits()
        self.state = SessionState.AWAIT_CONFIG
        self.config: StreamConfig | None = None
        self._stream: _Stream | None = None
        self._queue: deque[Job | _EndMarker] = deque()
        # At most one job of each kind runs: a final pass (whole utterance,
        # the slow one) may run while the next utterance's chunks do, as in
        # FunASR's 2pass server, so partials never wait behind a final.
        self._in_flight: dict[str, Job] = {}
        self._events: list[Event] = []
        self.last_activity = now

    # ---- input -------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> None:
        """A JSON text frame: a stream config, or `{"is_speaking": false}`."""
        self._guarded(self._on_text, text, now)

    def receive_audio(self, data: bytes, now: float) -> None:
        self._guarded(self._on_audio, data, now)

    def receive_end(self, now: float) -> None:
        """End of the current stream (DESIGN §4 step 3)."""
        self._guarded(self._on_end, now)

    def disconnect(self, now: float) -> None:
        """The client went away: still finalise what it said (DESIGN §8)."""
        if self.state is SessionState.STREAMING:
            self._finish_stream(now)
        self.state = SessionState.CLOSED

    def expire_if_idle(self, now: float, timeout_s: float) -> bool:
        """Close a connection that sent nothing for `timeout_s` (DESIGN §8).

        A session still waiting for the model is not idle: the client is
        waiting for us. Returns True if the session was closed."""
        if self.state is SessionState.CLOSED or self.busy:
            return False
        if now - self.last_activity < timeout_s:
            return False
        if self.state is SessionState.STREAMING:
            self._finish_stream(now)
        message = f"no data for {timeout_s:g} s; closing the idle connection"
        self._close_with(Error("idle_timeout", message, POLICY_VIOLATION))
        return True

    def refuse(self, code: str, message: str, close_code: int) -> None:
        """The server will not take this stream (e.g. over capacity, DESIGN §8).
        Called right after the config; no audio was accepted, so none is lost."""
        self._queue.clear()
        self._close_with(Error(code, message, close_code))

    @property
    def live(self) -> bool:
        """A real-time stream is open (offline uploads are not real-time)."""
        return self.state is SessionState.STREAMING and self.config.mode != "offline"

    def _guarded(self, handler, *args) -> None:
        if self.state is SessionState.CLOSED:
            return
        try:
            handler(*args)
        except ClientError as exc:
            now = args[-1]
            if self.state is SessionState.STREAMING:
                self._finish_stream(now)  # loses nothing already accepted
            self._close_with(Error(exc.code, str(exc), exc.close_code))

    def _on_text(self, text: str, now: float) -> None:
        self.last_activity = now
        message = parse_message(text)
        if self.state is SessionState.STREAMING:
            # Mid-stream only `is_speaking: false` means something; other keys
            # (FunASR clients resend a few) are ignored.
            if message.get("is_speaking") is False:
                self._on_end(now)
            return
        config = parse_config(message)
        self._start_stream(config)
        if message.get("is_speaking") is False:  # a config that also ends: empty stream
            self._on_end(now)

    def _start_stream(self, config: StreamConfig) -> None:
        self.config = config
        stride = self.engine.chunk_samples(config.options)
        self._stream = _Stream(config, self.endpoint, stride)
        self.state = SessionState.STREAMING
        if self.live:  # DESIGN §8: the server admits or refuses it before any audio
            self._events.append(StreamStarted(config.mode, config.wav_name))

    def _on_audio(self, data: bytes, now: float) -> None:
        self.last_activity = now
        if self.state is not SessionState.STREAMING:
            raise AudioBeforeConfig(
                "send the JSON config (with mode, audio_fs, …) before any audio"
            )
        if not data:
            raise InvalidAudio("empty binary frame: frames must carry audio")
        if len(data) > self.limits.max_frame_bytes:
            raise TooBig(f"frame of {len(data)} bytes exceeds {self.limits.max_frame_bytes}")
        stream = self._stream
        if stream.config.encoded:
            if len(stream.encoded) + len(data) > self.limits.max_file_bytes:
                raise TooBig(f"uploaded file exceeds {self.limits.max_file_bytes} bytes")
            stream.encoded += data
            return
        self._feed(stream.resampler.feed(pcm16_to_float(data)), now)
        self._check_backlog()

    def _on_end(self, now: float) -> None:
        self.last_activity = now
        if self.state is not SessionState.STREAMING:
            return  # an end with no stream open: nothing to close
        self._finish_stream(now)

    # ---- audio → utterances ----------------------------------------------

    def _feed(self, samples: np.ndarray, now: float) -> None:
        stream = self._stream
        pending = np.concatenate((stream.frame_tail, samples))
        usable = len(pending) - len(pending) % FRAME_SAMPLES
        for offset in range(0, usable, FRAME_SAMPLES):
            frame = pending[offset : offset + FRAME_SAMPLES]
            stream.history.append(frame)
            for boundary in stream.detector.update(stream.classifier.is_speech(frame)):
                self._on_boundary(boundary, now)
            if stream.utterance is not None:
                self._queue_strides(stream.utterance, stream.history.end, now)
            if stream.utterance is None:
                stream.history.trim_before(stream.history.end - stream.pre_roll)
        stream.frame_tail = pending[usable:].copy()

    def _on_boundary(self, boundary: SpeechStarted | SpeechEnded, now: float) -> None:
        stream = self._stream
        if isinstance(boundary, SpeechStarted):
            start = max(boundary.start, stream.history.start)
            utterance = Utterance(stream.config, stream.next_segment, start, consumed=start)
            if stream.config.mode != "offline":
                utterance.engine_state = self.engine.new_stream(stream.config.options)
            stream.utterance, stream.next_segment = utterance, stream.next_segment + 1
        else:
            self._close_utterance(boundary.end, boundary.speech_end, now)

    def _queue_strides(self, utterance: Utterance, until: int, now: float) -> None:
        """Queue every whole online stride of the utterance that ends by `until`."""
        if utterance.config.mode == "offline":
            return
        stride = self._stream.stride
        while utterance.consumed + stride <= until:
            self._queue_online(utterance, utterance.consumed + stride, False, now)

    def _queue_online(self, utterance: Utterance, end: int, is_last: bool, now: float) -> None:
        samples = self._stream.history.slice(utterance.consumed, end)
        request = ChunkRequest(None, samples, is_last)  # state is attached when taken
        self._queue.append(OnlineJob(utterance, request, end, now))
        utterance.consumed = end

    def _close_utterance(self, end: int, speech_end: int, now: float) -> None:
        stream = self._stream
        utterance, stream.utterance = stream.utterance, None
        utterance.end, utterance.speech_end = end, speech_end
        self._queue_strides(utterance, end, now)
        if utterance.config.mode == "online":
            self._queue_online(utterance, end, True, now)  # flush: the last tokens
        else:
            samples = stream.history.slice(utterance.start, end)
            request = FinalRequest(samples, utterance.config.options)
            self._queue.append(FinalJob(utterance, request, now))

    def _finish_stream(self, now: float) -> None:
        """Flush everything the stream holds; queue its closing message."""
        stream = self._stream
        if stream.config.encoded:
            self._feed_decoded_file(now)
        else:
            self._feed(stream.resampler.feed(np.zeros(0, np.float32), last=True), now)
        stream.history.append(stream.frame_tail)  # the last partial frame still counts
        stream.frame_tail = np.zeros(0, dtype=np.float32)
        open_utterance = stream.utterance
        if open_utterance is not None:
            open_utterance.end_of_stream = True
            for boundary in stream.detector.flush(stream.history.end):
                self._on_boundary(boundary, now)
        else:
            self._queue.append(_EndMarker(stream.config))
        self.state = SessionState.AWAIT_CONFIG

    def _feed_decoded_file(self, now: float) -> None:
        stream = self._stream
        data, stream.encoded = bytes(stream.encoded), bytearray()
        if not data:
            return
        self._feed(decode_file(data), now)

    def _check_backlog(self) -> None:
        if len(self._queue) > self.limits.max_queued_jobs:
            self._queue.clear()  # nothing here was acknowledged to the client yet
            raise Overloaded(
                "audio is arriving faster than it can be recognised; slow down and retry"
            )

    # ---- model work ----------------------------------------------------------

    @property
    def has_work(self) -> bool:
        """The next job can be taken now: an online chunk once the previous chunk
        is done; a final pass once everything before it is (its utterance's
        chunks, the previous final), so messages stay in order per utterance."""
        self._emit_end_markers()
        if not self._queue or isinstance(self._queue[0], _EndMarker):
            return False
        if self._queue[0].kind == "online":
            return "online" not in self._in_flight
        return not self._in_flight

    @property
    def busy(self) -> bool:
        """Jobs are queued or running: the stream's messages are not all out yet."""
        return bool(self._in_flight) or bool(self._queue)

    def peek_kind(self) -> str | None:
        return self._queue[0].kind if self.has_work else None

    def take_job(self) -> Job | None:
        if not self.has_work:
            return None
        job = self._queue.popleft()
        if isinstance(job, OnlineJob):
            job.request = replace(job.request, state=job.utterance.engine_state)
        self._in_flight[job.kind] = job
        return job

    def complete(self, job: Job, result: ChunkResult | FinalResult) -> None:
        assert self._in_flight.get(job.kind) is job, "a job completes once, after it was taken"
        del self._in_flight[job.kind]
        if isinstance(job, OnlineJob):
            self._on_chunk_result(job, result)
        else:
            self._on_final_result(job, result)
        self._emit_end_markers()

    def fail(self, job: Job, message: str) -> None:
        """The engine failed on this job: tell the client (no internals), close."""
        self._in_flight.clear()
        self._queue.clear()
        self._close_with(Error("internal_error", message, INTERNAL_ERROR))

    def _on_chunk_result(self, job: OnlineJob, result: ChunkResult) -> None:
        utterance, render = job.utterance, self.engine.render
        utterance.engine_state = result.state
        utterance.committed.extend(result.committed)
        changed = bool(result.committed) or result.tentative != utterance.tentative
        utterance.tentative = result.tentative
        last = job.request.is_last
        if not (changed or last):
            return  # no flicker: nothing new to show
        self._events.append(
            Partial(
                mode="online" if utterance.config.mode == "online" else "2pass-online",
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
        )

    def _on_final_result(self, job: FinalJob, result: FinalResult) -> None:
        utterance = job.utterance
        offset = _ms(utterance.start)
        self._events.append(
            Final(
                mode="offline" if utterance.config.mode == "offline" else "2pass-offline",
                wav_name=utterance.config.wav_name,
                segment=utterance.segment,
                text=result.text,
                start_ms=offset,
                end_ms=_ms(utterance.speech_end),
                token_spans_ms=tuple((a + offset, b + offset) for a, b in result.token_spans_ms),
                sentences=tuple(
                    replace(
                        s,
                        start_ms=s.start_ms + offset,
                        end_ms=s.end_ms + offset,
                        token_spans_ms=tuple((a + offset, b + offset) for a, b in s.token_spans_ms),
                    )
                    for s in result.sentences
                ),
                end_of_stream=utterance.end_of_stream,
            )
        )

    def _emit_end_markers(self) -> None:
        while not self._in_flight and self._queue and isinstance(self._queue[0], _EndMarker):
            config = self._queue.popleft().config
            wire_mode = {"online": "online", "offline": "offline"}.get(config.mode, "2pass-offline")
            self._events.append(StreamEnd(wire_mode, config.wav_name))

    # ---- output ----------------------------------------------------------------

    def events(self) -> list[Event]:
        """Events ready to send, in order; each is returned once."""
        self._emit_end_markers()
        events, self._events = self._events, []
        return events

    def _close_with(self, error: Error) -> None:
        self._events.append(error)
        self.state = SessionState.CLOSED


def _ms(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE
