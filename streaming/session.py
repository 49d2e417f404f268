"""The caption session: one client connection's state machine, free of I/O.

Theory of operation
-------------------
The server feeds a session what the client sent (`receive_text`,
`receive_audio`) with the current clock value, and takes back two things:
*jobs* for the model (`take_job`, answered with `complete`/`fail`) and
*events* for the wire (`events`). Nothing here sleeps, reads a clock or
touches a socket (docs/design.md §2).

The session is the wire protocol's state machine and the job queue; its
parts live beside it: `stream.AudioStream` turns a stream's bytes into
utterances and jobs, `jobs` holds the job records and the ordering rule
(which job may start given what runs), and `results` turns engine results
into events. Jobs of one session run in order, so partials of an utterance
always precede its final and a stream's closing message is always last.

States: AWAIT_CONFIG --config--> STREAMING --is_speaking:false--> AWAIT_CONFIG
(queued jobs still finish; a new config may start the next stream at once);
any client error --> CLOSED.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from streaming.config import MAX_HOTWORDS, StreamConfig, parse_config, parse_message
from streaming.engine import ChunkResult, Engine, FinalResult
from streaming.errors import (
    INTERNAL_ERROR,
    POLICY_VIOLATION,
    AudioBeforeConfig,
    ClientError,
    FasterThanRealTime,
    InvalidAudio,
    Overloaded,
    StreamTooLong,
    TooBig,
    TooManyHotwords,
    UnsupportedFormat,
)
from streaming.events import EndAcknowledged, Error, Event, StreamStarted
from streaming.jobs import (
    EndAckMarker,
    FinalJob,
    Job,
    JobKind,
    Marker,
    OnlineJob,
    Utterance,
    startable,
)
from streaming.results import final_event, partial_event, stream_end_event
from streaming.stream import AudioStream
from streaming.vad import EndpointOptions

# Re-exported: the runner and tests name jobs through the session module.
__all__ = [
    "CaptionSession", "FinalJob", "Job", "JobKind", "OnlineJob", "SessionLimits",
    "SessionState", "Utterance",
]


class SessionState(enum.Enum):
    AWAIT_CONFIG = "await_config"
    STREAMING = "streaming"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionLimits:
    max_frame_bytes: int = 4 * 1024 * 1024  # docs/design.md §8: huge frames are refused (1009)
    max_file_bytes: int = 200 * 1024 * 1024  # a whole encoded upload (offline files)
    max_queued_jobs: int = 400  # ~4 min of audio waiting for the model: we are overloaded
    max_hotwords: int = MAX_HOTWORDS
    max_stream_s: float | None = None  # audio seconds in one stream; None: no cap
    # A live stream may run this far ahead of the clock (a client's send buffer
    # catching up); beyond it the client is flooding, not streaming.
    max_audio_ahead_s: float = 60.0
    # An upload (offline mode) is read no further while this many utterances wait
    # for the model: the socket holds the client back, the server holds little
    # of a long file, and a lone file still has enough queued to fill a batch.
    upload_backlog_jobs: int = 64


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
        self._stream: AudioStream | None = None
        self._queue: deque[Job | Marker] = deque()
        self._in_flight: list[Job] = []  # one per kind, or several offline finals (jobs.may_start)
        self._events: list[Event] = []
        self._acknowledge_upload_end = False  # FunASR's is_end on an encoded stream
        self.last_activity = now
        self._received_samples = 0  # PCM samples of the open stream, at its audio_fs
        self._first_audio_at: float | None = None

    # ---- input -------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> None:
        """A JSON text frame: a stream config, or `{"is_speaking": false}`."""
        self._guarded(self._on_text, text, now)

    def receive_audio(self, data: bytes, now: float) -> None:
        self._guarded(self._on_audio, data, now)

    def receive_end(self, now: float) -> None:
        """End of the current stream (docs/design.md §4 step 3)."""
        self._guarded(self._on_end, now)

    def disconnect(self, now: float) -> None:
        """The client went away: still finalise what it said (docs/design.md §8)."""
        if self.state is SessionState.STREAMING:
            self._finish_stream(now)
        self.state = SessionState.CLOSED
        self._emit_end_markers()

    def expire_if_idle(self, now: float, timeout_s: float) -> bool:
        """Close a connection that sent nothing for `timeout_s` (docs/design.md §8).

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
        self._emit_end_markers()
        return True

    def refuse(self, code: str, message: str, close_code: int) -> None:
        """The server will not take this stream (e.g. over capacity, docs/design.md §8).
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
        self._emit_end_markers()

    def _on_text(self, text: str, now: float) -> None:
        self.last_activity = now
        message = parse_message(text)
        if self.state is SessionState.STREAMING:
            # Mid-stream only `is_speaking: false` means something; other keys
            # (FunASR clients resend a few) are ignored.
            if message.get("is_speaking") is False:
                self._on_end(now, acknowledge=message.get("is_end") is True)
            return
        config = parse_config(message)
        if len(config.hotwords) > self.limits.max_hotwords:
            raise TooManyHotwords(f"at most {self.limits.max_hotwords} hotwords; "
                                  f"got {len(config.hotwords)}")
        self._start_stream(config)
        if message.get("is_speaking") is False:  # a config that also ends: empty stream
            self._on_end(now, acknowledge=message.get("is_end") is True)

    def _start_stream(self, config: StreamConfig) -> None:
        """The one place a stream starts (its start event, if any, goes here)."""
        self.config = config
        stride = self.engine.chunk_samples(config.options)
        self._stream = AudioStream(config, self.endpoint, stride, self.engine.new_stream)
        self.state = SessionState.STREAMING
        self._received_samples, self._first_audio_at = 0, None
        # docs/design.md §8: the server authorises it, and admits a live one, before any audio
        self._events.append(StreamStarted(config.mode, config.wav_name, live=self.live))

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
        if self._stream.config.encoded:
            self._stream.receive_encoded(data, self.limits.max_file_bytes)
            return
        self._check_pace(len(data) // 2, now)
        self._queue.extend(self._stream.receive_pcm(data, now))
        self._check_backlog()

    def _on_end(self, now: float, acknowledge: bool = False) -> None:
        self.last_activity = now
        if self.state is not SessionState.STREAMING:
            return  # an end with no stream open: nothing to close
        if self.config.encoded:  # finished by end_upload, once decoded
            self._stream.upload_ended = True
            self._acknowledge_upload_end = acknowledge
            return
        self._finish_stream(now)
        if acknowledge:  # after the stream's last job, so after its last final
            self._queue.append(EndAckMarker(self.config))

    def _finish_stream(self, now: float) -> None:
        """Flush everything the stream holds; queue its closing message."""
        self._queue.extend(self._stream.finish(now))
        self.state = SessionState.AWAIT_CONFIG

    def _check_pace(self, samples: int, now: float) -> None:
        """The stream's duration cap, and (live streams) how far its audio may run
        ahead of the clock: a bounded buffer, then a clear error (docs/security.md)."""
        if self._first_audio_at is None:
            self._first_audio_at = now
        self._received_samples += samples
        seconds = self._received_samples / self.config.audio_fs
        if self.limits.max_stream_s is not None and seconds > self.limits.max_stream_s:
            raise StreamTooLong(f"streams may last at most {self.limits.max_stream_s:g} s "
                                "of audio; start a new stream to go on")
        ahead = seconds - (now - self._first_audio_at)
        if self.live and ahead > self.limits.max_audio_ahead_s:
            raise FasterThanRealTime(
                f"audio is arriving faster than real time ({ahead:.0f} s ahead of the "
                f"clock; at most {self.limits.max_audio_ahead_s:g} s): send it at its "
                "own pace, or use mode offline for files"
            )

    def _check_backlog(self) -> None:
        if len(self._queue) > self.limits.max_queued_jobs:
            self._queue.clear()  # nothing here was acknowledged to the client yet
            raise Overloaded(
                "audio is arriving faster than it can be recognised; slow down and retry"
            )

    # ---- encoded uploads ------------------------------------------------------
    # Decoding blocks (PyAV), so the server decodes off the event loop
    # (server/upload_decoder.py): it takes the accepted bytes, feeds back the
    # decoded audio, and ends the upload once the client ended it and decoding
    # is done.

    def take_upload(self) -> bytes:
        """Encoded bytes accepted since the last call, for the server's decoder."""
        if self.state is not SessionState.STREAMING or not self.config.encoded:
            return b""
        return self._stream.take_upload()

    @property
    def upload_ended(self) -> bool:
        """The client ended an encoded stream; it finishes at `end_upload`."""
        return self.state is SessionState.STREAMING and self._stream.upload_ended

    def receive_decoded(self, samples: np.ndarray, now: float) -> None:
        """Decoded audio of the open upload: mono float32 at the engine's rate."""
        if self.state is SessionState.STREAMING and self.config.encoded:
            self._queue.extend(self._stream.receive_decoded(samples, now))
            self._emit_end_markers()

    def end_upload(self, now: float, error: str | None = None) -> None:
        """Decoding ended: finish the stream with what was decoded; `error` says
        why the rest could not be (the client is told, 1003)."""
        self._guarded(self._on_upload_end, error, now)

    def _on_upload_end(self, error: str | None, now: float) -> None:
        if self.state is not SessionState.STREAMING or not self.config.encoded:
            return
        if error is not None:
            raise UnsupportedFormat(error)  # _guarded finishes what was decoded first
        self._finish_stream(now)
        if self._acknowledge_upload_end:  # after the stream's last job (FunASR's is_end)
            self._queue.append(EndAckMarker(self.config))

    # ---- model work ----------------------------------------------------------

    @property
    def has_work(self) -> bool:
        """Some job may be taken now (jobs.startable); a pure query."""
        return bool(self.ready_kinds())

    def ready_kinds(self) -> list[JobKind]:
        """The kinds of job that may be taken now, the one nearer the queue's
        front first (a chunk may pass a final waiting for the final lane)."""
        return [kind for _, kind in self._startable()]

    def _startable(self) -> list[tuple[int, JobKind]]:
        """(queue index, kind) of each job that may start now, front first."""
        return sorted((index, kind) for kind in JobKind
                      if (index := startable(self._queue, self._in_flight, kind)) is not None)

    @property
    def queued_entries(self) -> int:
        """Jobs and markers waiting: input that left it unchanged made no new work."""
        return len(self._queue)

    @property
    def has_events(self) -> bool:
        """Events are waiting to be taken (`events()`)."""
        return bool(self._events)

    @property
    def busy(self) -> bool:
        """Jobs are queued or running: the stream's messages are not all out yet."""
        return bool(self._in_flight) or bool(self._queue)

    @property
    def backlogged(self) -> bool:
        """An upload has enough work queued: read no more of it for now
        (`SessionLimits.upload_backlog_jobs`); live streams are never held back."""
        # In flight counts too: a remote runner forwards every job it may at once.
        waiting = len(self._queue) + len(self._in_flight)
        return (self.state is SessionState.STREAMING and not self.live
                and waiting >= self.limits.upload_backlog_jobs)

    def peek_kind(self) -> JobKind | None:
        kinds = self.ready_kinds()
        return kinds[0] if kinds else None

    def take_job(self, kind: JobKind | str | None = None) -> Job | None:
        """The next job of `kind` that may start (default: of any kind), or None."""
        if kind is None:
            found = self._startable()
            index = found[0][0] if found else None
        else:
            index = startable(self._queue, self._in_flight, JobKind(kind))
        if index is None:
            return None
        job = self._queue[index]
        del self._queue[index]
        if isinstance(job, OnlineJob):
            job.request = replace(job.request, state=job.utterance.engine_state)
        self._in_flight.append(job)
        return job

    def complete(self, job: Job, result: ChunkResult | FinalResult) -> None:
        taken = any(j is job for j in self._in_flight)
        if self.state is SessionState.CLOSED and not taken:
            return  # failed meanwhile (`fail`, e.g. by its other lane): nobody waits for it
        assert taken, "a job completes once, after it was taken"
        self._in_flight = [j for j in self._in_flight if j is not job]
        if isinstance(job, OnlineJob):
            self._on_chunk_result(job, result)
        else:
            self._on_final_result(job, result)
        self._emit_end_markers()

    def fail(self, job: Job, message: str) -> None:
        """The engine failed on this job: tell the client (no internals), close.
        A client waiting for its end acknowledgement gets it, carrying the error."""
        if not any(j is job for j in self._in_flight):
            return  # another job of the same failed batch closed the session already
        self._in_flight.clear()
        acks = [m for m in self._queue if isinstance(m, EndAckMarker)]
        self._queue.clear()
        for ack in acks:
            self._events.append(EndAcknowledged(ack.config.mode, ack.config.wav_name, message))
        self._close_with(Error("internal_error", message, INTERNAL_ERROR))

    def abort(self, code: str, message: str) -> None:
        """The server cannot go on with this stream (e.g. its finals cannot be
        stored): drop its work and its unsent events, tell the client (1011),
        close. Jobs still running are ignored when they complete."""
        self._in_flight.clear()
        self._queue.clear()
        self._events.clear()
        self._close_with(Error(code, message, INTERNAL_ERROR))

    def _on_chunk_result(self, job: OnlineJob, result: ChunkResult) -> None:
        event = partial_event(job, result, self.engine.render)
        if event is not None:
            self._events.append(event)

    def _on_final_result(self, job: FinalJob, result: FinalResult) -> None:
        self._events.append(final_event(job, result))

    def _emit_end_markers(self) -> None:
        """Closing messages at the queue's front go out once nothing runs."""
        while not self._in_flight and self._queue and isinstance(self._queue[0], Marker):
            marker = self._queue.popleft()
            if isinstance(marker, EndAckMarker):
                self._events.append(EndAcknowledged(marker.config.mode, marker.config.wav_name))
            else:
                self._events.append(stream_end_event(marker.config))

    # ---- output ----------------------------------------------------------------

    def events(self) -> list[Event]:
        """Events ready to send, in order; each is returned once."""
        self._emit_end_markers()
        events, self._events = self._events, []
        return events

    def _close_with(self, error: Error) -> None:
        self._events.append(error)
        self.state = SessionState.CLOSED

