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

from streaming.audio import StreamResampler, pcm16_to_float
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
        self.frame_tail = np.zeros(0, dtype=np.float32)
        self.pcm_tail = b""  # frame_tail as the client's PCM16 bytes, at 16 kHz input
        self.upload = bytearray()  # encoded bytes not yet taken by the server's decoder
        self.upload_bytes = 0  # the whole upload so far, against the size limit
        self.upload_ended = False  # the client ended an encoded stream: decode, then finish
        self.utterance: Utterance | None = None
        self.next_segment = 0

    # ---- input -------------------------------------------------------------

    def receive_pcm(self, data: bytes, now: float) -> list[Job]:
        samples = pcm16_to_float(data)
        if self.resampler.passthrough:  # the VAD reads the client's bytes as they are
            return self._feed(samples, now, self.pcm_tail + data)
        return self._feed(self.resampler.feed(samples), now)

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
        self.history.append(self.frame_tail)  # the last partial frame still counts
        self.frame_tail = np.zeros(0, dtype=np.float32)
        if self.utterance is None:
            return [*jobs, EndMarker(self.config)]
        self.utterance.end_of_stream = True
        for boundary in self.detector.flush(self.history.end):
            jobs += self._on_boundary(boundary, now)
        return jobs

    # ---- segmentation ------------------------------------------------------

    def _feed(self, samples: np.ndarray, now: float, pcm: bytes | None = None) -> list[Job]:
        """`pcm`: the same pending audio (tail included) as PCM16 bytes, when there are."""
        jobs: list[Job] = []
        pending = np.concatenate((self.frame_tail, samples))
        usable = len(pending) - len(pending) % FRAME_SAMPLES
        if pcm is None:
            voiced = self.classifier.classify(pending[:usable])
        else:
            voiced = self.classifier.classify_pcm(pcm[: 2 * usable])
        for offset, is_speech in zip(range(0, usable, FRAME_SAMPLES), voiced):
            frame = pending[offset : offset + FRAME_SAMPLES]
            self.history.append(frame)
            for boundary in self.detector.update(is_speech):
                jobs += self._on_boundary(boundary, now)
            if self.utterance is not None:
                jobs += self._strides(self.utterance, self.history.end, now)
            if self.utterance is None:
                self.history.trim_before(self.history.end - self.pre_roll)
        self.frame_tail = pending[usable:].copy()
        self.pcm_tail = b"" if pcm is None else pcm[2 * usable :]
        return jobs

    def _on_boundary(self, boundary: SpeechStarted | SpeechEnded, now: float) -> list[Job]:
        if isinstance(boundary, SpeechEnded):
            return self._close_utterance(boundary.end, boundary.speech_end, now)
        start = max(boundary.start, self.history.start)
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
