"""A growable window of recent 16 kHz audio, addressed by absolute sample index."""

from __future__ import annotations

import numpy as np

from streaming.audio import pcm16_to_float


class AudioHistory:
    """Keeps samples [start, end) of a stream; old audio is trimmed explicitly."""

    def __init__(self) -> None:
        self._buf = np.zeros(16000, dtype=np.float32)
        self.start = 0  # absolute index of self._buf[0]
        self._len = 0

    @property
    def end(self) -> int:
        return self.start + self._len

    def append(self, samples: np.ndarray) -> None:
        self._reserve(len(samples))[:] = samples
        self._len += len(samples)

    def append_pcm16(self, pcm: bytes | memoryview) -> None:
        """Little-endian PCM16 bytes, converted straight into the buffer (exact:
        the scale is a power of two)."""
        count = len(pcm) // 2
        pcm16_to_float(pcm, out=self._reserve(count))
        self._len += count

    def _reserve(self, count: int) -> np.ndarray:
        """The buffer's next `count` free samples, grown if need be."""
        needed = self._len + count
        if needed > len(self._buf):
            grown = np.zeros(max(needed, 2 * len(self._buf)), dtype=np.float32)
            grown[: self._len] = self._buf[: self._len]
            self._buf = grown
        return self._buf[self._len : needed]

    def slice(self, begin: int, end: int) -> np.ndarray:
        """A copy of samples [begin, end); both must lie inside what is kept."""
        if not self.start <= begin <= end <= self.end:
            raise IndexError(f"[{begin}, {end}) outside kept audio [{self.start}, {self.end})")
        return self._buf[begin - self.start : end - self.start].copy()

    def trim_before(self, position: int) -> None:
        """Forget samples before `position` (no-op if already gone)."""
        drop = min(max(0, position - self.start), self._len)
        if drop:
            self._buf[: self._len - drop] = self._buf[drop : self._len]
            self._len -= drop
            self.start += drop
