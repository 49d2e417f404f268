"""Audio in: PCM16 decoding, resampling to the model rate, whole-file decoding.

Resampling uses soxr (libsoxr, a well-kept VHQ resampler) in streaming mode so
that the output does not depend on how the client split its bytes.
"""

from __future__ import annotations

import io

import numpy as np
import soxr

from streaming.engine import SAMPLE_RATE
from streaming.errors import InvalidAudio, UnsupportedFormat

PCM16_SCALE = 32768.0


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian PCM16 bytes to float32 in [-1, 1)."""
    if len(data) % 2:
        raise InvalidAudio(
            f"binary frames must hold whole 16-bit samples; got {len(data)} bytes (odd)"
        )
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
    samples *= 1 / PCM16_SCALE  # a power of two: the same floats as dividing, one pass less
    return samples


def float_to_pcm16(samples: np.ndarray) -> bytes:
    # Two ufuncs rather than np.clip: this runs for every 30 ms of every
    # live stream, and np.clip's Python wrapper cost more than the work.
    scaled = np.multiply(samples, PCM16_SCALE, dtype=np.float32)
    np.maximum(scaled, -PCM16_SCALE, out=scaled)
    np.minimum(scaled, PCM16_SCALE - 1, out=scaled)
    return scaled.astype("<i2").tobytes()


class StreamResampler:
    """Any input rate to SAMPLE_RATE, chunk by chunk; passthrough at 16 kHz."""

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, "float32")
        )

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def feed(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


def decode_file(data: bytes, out_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a whole encoded file (wav, mp3, flac, m4a, ogg…) to mono float32."""
    import av  # imported here: only offline file uploads need it

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise UnsupportedFormat("the uploaded file has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)
            pieces = []
            for frame in container.decode(audio=0):
                pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as exc:
        raise UnsupportedFormat(f"could not decode the uploaded audio: {exc}") from None
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces).astype(np.float32)
