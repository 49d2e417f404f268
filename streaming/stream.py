"""One stream's audio front end: bytes in, utterances and their jobs out.

PCM16 → float → resample to 16 kHz → 30 ms VAD frames → `EndpointDetector`
→ utterances. While an utterance is open its audio is cut into the engine's
strides (online jobs, for partials); when it ends, the whole utterance
becomes a final job (2pass / offline) or a last flushing chunk (online).
Every method returns the jobs it produced, in order; the session queues them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streaming.audio import StreamResampler, check_pcm16, pcm16_to_float
from streaming.config import StreamConfig
from streaming.engine import SAMPLE_RATE, ChunkRequest, FinalRequest, StreamOptions
from streaming.errors import TooBig
from streaming.history import AudioHistory
from streaming.jobs import EndMarker, FinalJob, Job, OnlineJob, Utterance
from streaming.vad import (
    FRAME_SAMPLES,
    EndpointDetector,
    EndpointOptions,
    FrameClassifier,
    SpeechEnded,
    SpeechStarted,
)


class AudioStream:
    """Resampling, VAD framing, the kept history and the open utterance of one stream."""

    def __init__(
        self, config: StreamConfig, endpoint: EndpointOptions, stride: int,
        new_state: Callable[[StreamOptions], Any],
    ) -> None:
        self.config = config
        self.stride = stride  # samples in one online job
        self.new_state = new_state  # Engine.new_stream: online state of a new utterance
        self.resampler = StreamResampler(config.audio_fs)
        self.classifier = FrameClassifier(endpoint.aggressiveness)
        self.detector = EndpointDetector(endpoint)
        self.pre_roll = endpoint.pre_roll_ms * SAMPLE_RATE // 1000
        self.history = AudioHistory()
        # Audio short of a whole VAD frame waits here: as the client's PCM16 bytes
        # at 16 kHz (passthrough), as float samples otherwise. One stays empty.
        self.frame_tail = np.zeros(0, dtype=np.float32)
        self.pcm_tail = b""
        # Where the kept history would begin if it were trimmed after every VAD
        # frame: an utterance never starts before it. The buffer itself is
        # trimmed once per call (history.trim_before moves memory).
        self.kept_from = 0
        self.upload = bytearray()  # encoded bytes not yet taken by the server's decoder
        self.upload_bytes = 0  # the whole upload so far, against the size limit
        self.upload_ended = False  # the client ended an encoded stream: decode, then finish
        self.utterance: Utterance | None = None
        self.next_segment = 0

    # ---- input -------------------------------------------------------------

    def receive_pcm(self, data: bytes, now: float) -> list[Job]:
        if not self.resampler.passthrough:
            return self._feed(self.resampler.feed(pcm16_to_float(data)), now)
        check_pcm16(data)
        # 16 kHz already: the VAD reads the client's bytes as they are, and the
        # history takes them in one conversion (every 60 ms of every live stream).
        pcm = self.pcm_tail + data if self.pcm_tail else data
        usable = len(pcm) - len(pcm) % (2 * FRAME_SAMPLES)
        whole = memoryview(pcm)[:usable]
        start = self.history.end
        self.history.append_pcm16(whole)
        self.pcm_tail = bytes(pcm[usable:])
        return self._segment(start, self.classifier.classify_pcm(whole), now)

    def receive_encoded(self, data: bytes, max_bytes: int) -> None:
        """Part of an uploaded file, kept for the server's decoder (`take_upload`):
        decoding blocks, so it runs off the event loop (server/upload_decoder.py)."""
        if self.upload_bytes + len(data) > max_bytes:
            raise TooBig(f"uploaded file exceeds {max_bytes} bytes")
        self.upload_bytes += len(data)
        self.upload += data

    def take_upload(self) -> bytes:
        data, self.upload = bytes(self.upload), bytearray()
        return data

    def receive_decoded(self, samples: np.ndarray, now: float) -> list[Job]:
        """Decoded audio of the upload: mono float32 already at SAMPLE_RATE."""
        return self._feed(samples, now)

    def finish(self, now: float) -> list[Job | EndMarker]:
        """Flush everything the stream holds: its last jobs, or the closing marker.
        An encoded stream ends with what was decoded by now."""
        jobs: list[Job | EndMarker] = []
        if not self.config.encoded:
            jobs += self._feed(self.resampler.feed(np.zeros(0, np.float32), last=True), now)
        # The last partial frame still counts.
        self.history.append(self.frame_tail)
        self.history.append_pcm16(self.pcm_tail)
        self.frame_tail, self.pcm_tail = np.zeros(0, dtype=np.float32), b""
        if self.utterance is None:
            return [*jobs, EndMarker(self.config)]
        self.utterance.end_of_stream = True
        for boundary in self.detector.flush(self.history.end):
            jobs += self._on_boundary(boundary, now)
        return jobs

    # ---- segmentation ------------------------------------------------------

    def _feed(self, samples: np.ndarray, now: float) -> list[Job]:
        """Float samples at 16 kHz (resampled or decoded audio)."""
        pending = np.concatenate((self.frame_tail, samples)) if len(self.frame_tail) else samples
        usable = len(pending) - len(pending) % FRAME_SAMPLES
        start = self.history.end
        self.history.append(pending[:usable])
        self.frame_tail = pending[usable:].copy()
        return self._segment(start, self.classifier.classify(pending[:usable]), now)

    def _segment(self, start: int, voiced: list[bool], now: float) -> list[Job]:
        """Endpointing over whole VAD frames already in the history from `start`
        on: utterance boundaries, and the online strides of the open utterance
        up to each frame's end."""
        jobs: list[Job] = []
        end = start
        for is_speech in voiced:
            end += FRAME_SAMPLES
            for boundary in self.detector.update(is_speech):
                jobs += self._on_boundary(boundary, now)
            utterance = self.utterance
            if utterance is None:
                self.kept_from = max(self.kept_from, end - self.pre_roll)
            elif utterance.consumed + self.stride <= end:
                jobs += self._strides(utterance, end, now)
        if self.utterance is None:
            self.history.trim_before(self.kept_from)
        return jobs

    def _on_boundary(self, boundary: SpeechStarted | SpeechEnded, now: float) -> list[Job]:
        if isinstance(boundary, SpeechEnded):
            return self._close_utterance(boundary.end, boundary.speech_end, now)
        start = max(boundary.start, self.kept_from)
        utterance = Utterance(self.config, self.next_segment, start, consumed=start)
        if self.config.mode != "offline":
            utterance.engine_state = self.new_state(self.config.options)
        self.utterance, self.next_segment = utterance, self.next_segment + 1
        return []

    def _strides(self, utterance: Utterance, until: int, now: float) -> list[Job]:
        """Every whole online stride of the utterance that ends by `until`."""
        jobs: list[Job] = []
        if utterance.config.mode == "offline":
            return jobs
        while utterance.consumed + self.stride <= until:
            jobs.append(self._online(utterance, utterance.consumed + self.stride, False, now))
        return jobs

    def _online(self, utterance: Utterance, end: int, is_last: bool, now: float) -> OnlineJob:
        samples = self.history.slice(utterance.consumed, end)
        request = ChunkRequest(None, samples, is_last)  # state is attached when taken
        utterance.consumed = end
        return OnlineJob(utterance, request, end, now)

    def _close_utterance(self, end: int, speech_end: int, now: float) -> list[Job]:
        utterance, self.utterance = self.utterance, None
        utterance.end, utterance.speech_end = end, speech_end
        jobs = self._strides(utterance, end, now)
        if utterance.config.mode == "online":
            jobs.append(self._online(utterance, end, True, now))  # flush: the last tokens
        else:
            samples = self.history.slice(utterance.start, end)
            jobs.append(FinalJob(utterance, FinalRequest(samples, utterance.config.options), now))
        return jobs
