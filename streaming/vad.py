"""Voice activity: webrtcvad frame classification and utterance endpointing.

The detector works on frame decisions and sample positions only, so every
timing rule (start, trailing silence, maximum length) is exact and testable
without a clock. Positions are samples at 16 kHz since the stream began.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from streaming.audio import float_to_pcm16
from streaming.engine import SAMPLE_RATE

FRAME_MS = 30  # webrtcvad takes 10, 20 or 30 ms frames; 30 is the most robust
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


@dataclass(frozen=True)
class EndpointOptions:
    aggressiveness: int = 2  # webrtcvad 0 (lenient) .. 3 (strict)
    start_window_ms: int = 240  # look at this much audio to decide speech started…
    start_ratio: float = 0.6  # …and call it speech when this share of it is voiced
    end_silence_ms: int = 700  # trailing silence that ends an utterance
    pre_roll_ms: int = 300  # audio kept before the detected start (soft onsets)
    max_segment_ms: int = 15000  # forced cut so captions never stall on endless speech

    def frames(self, ms: int) -> int:
        return max(1, ms // FRAME_MS)


@dataclass(frozen=True)
class SpeechStarted:
    start: int  # first sample of the utterance, pre-roll included


@dataclass(frozen=True)
class SpeechEnded:
    end: int  # one past the last sample that belongs to the utterance
    speech_end: int  # one past the last voiced frame (for reported times)
    forced: bool  # cut at max_segment_ms while speech went on


EndpointEvent = SpeechStarted | SpeechEnded


class FrameClassifier:
    """webrtcvad on exact 30 ms frames of float audio."""

    def __init__(self, aggressiveness: int) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: np.ndarray) -> bool:
        return self._vad.is_speech(float_to_pcm16(frame), SAMPLE_RATE)

    def classify(self, frames: np.ndarray) -> list[bool]:
        """Voiced or not, for consecutive whole frames (one PCM16 conversion for all)."""
        return self.classify_pcm(float_to_pcm16(frames))

    def classify_pcm(self, pcm: bytes) -> list[bool]:
        """The same for 16 kHz PCM16 bytes of whole frames: a client's own bytes need
        no round trip through float (the conversion is exact both ways)."""
        step = 2 * FRAME_SAMPLES
        return [self._vad.is_speech(pcm[i : i + step], SAMPLE_RATE)
                for i in range(0, len(pcm), step)]


class EndpointDetector:
    """Turns per-frame voiced/unvoiced decisions into utterance boundaries."""

    def __init__(self, options: EndpointOptions | None = None) -> None:
        self.options = options or EndpointOptions()
        self._window: deque[bool] = deque(maxlen=self.options.frames(self.options.start_window_ms))
        self._frames_seen = 0
        self._floor = 0  # a new utterance may not start before this sample
        self.in_speech = False
        self._start = 0
        self._last_voiced_end = 0

    def update(self, voiced: bool) -> list[EndpointEvent]:
        """Take the decision for the next frame; return the boundaries it causes."""
        self._frames_seen += 1
        frame_end = self._frames_seen * FRAME_SAMPLES
        if voiced:
            self._last_voiced_end = frame_end
        return self._in_speech(frame_end) if self.in_speech else self._in_silence(frame_end, voiced)

    def _in_silence(self, frame_end: int, voiced: bool) -> list[EndpointEvent]:
        self._window.append(voiced)
        opts = self.options
        if not voiced or sum(self._window) < opts.start_ratio * self._window.maxlen:
            return []
        first_voiced = frame_end - (len(self._window) - self._window.index(True)) * FRAME_SAMPLES
        pre_roll = opts.pre_roll_ms * SAMPLE_RATE // 1000
        return [self._begin(max(self._floor, first_voiced - pre_roll))]

    def _in_speech(self, frame_end: int) -> list[EndpointEvent]:
        opts = self.options
        silence = frame_end - self._last_voiced_end
        if silence >= opts.frames(opts.end_silence_ms) * FRAME_SAMPLES:
            return [self._finish(frame_end, forced=False)]
        if frame_end - self._start >= opts.max_segment_ms * SAMPLE_RATE // 1000:
            # Cut, and carry straight on if the speaker is still talking.
            ended = self._finish(frame_end, forced=True)
            return [ended, self._begin(frame_end)] if silence == 0 else [ended]
        return []

    def _begin(self, start: int) -> SpeechStarted:
        self.in_speech, self._start = True, start
        self._window.clear()
        return SpeechStarted(start)

    def _finish(self, end: int, forced: bool) -> SpeechEnded:
        self.in_speech, self._floor = False, end
        return SpeechEnded(end, max(self._start, min(end, self._last_voiced_end)), forced)

    def flush(self, stream_end: int) -> list[EndpointEvent]:
        """The stream ended: close an open utterance at the last sample."""
        if not self.in_speech:
            return []
        return [self._finish(stream_end, forced=False)]
