"""Audio in: PCM16 decoding, resampling to the model rate, encoded-file decoding.

Resampling uses soxr (libsoxr, a well-kept VHQ resampler) in streaming mode so
that the output does not depend on how the client split its bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import soxr

from streaming.engine import SAMPLE_RATE
from streaming.errors import InvalidAudio, UnsupportedFormat

PCM16_SCALE = 32768.0
INT16_TO_FLOAT = np.float32(1 / PCM16_SCALE)  # float32 arithmetic, in place


def check_pcm16(data: bytes) -> None:
    if len(data) % 2:
        raise InvalidAudio(
            f"binary frames must hold whole 16-bit samples; got {len(data)} bytes (odd)"
        )


def pcm16_to_float(data: bytes | memoryview, out: np.ndarray | None = None) -> np.ndarray:
    """Little-endian PCM16 bytes to float32 in [-1, 1), into `out` if given
    (a float32 array of as many samples: e.g. the free end of a buffer)."""
    check_pcm16(data)
    ints = np.frombuffer(data, dtype="<i2")
    if out is None:
        out = ints.astype(np.float32)
    else:
        out[:] = ints
    out *= INT16_TO_FLOAT  # a power of two: the same floats as dividing, one pass less
    return out


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
    pieces = list(decode_container(io.BytesIO(data), out_rate))
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces)


# Read little before the first frame: an upload decoded as it arrives (the
# server's UploadDecoder) should not wait for FFmpeg's 5 MB / 5 s default probe.
PROBE_OPTIONS = {"probesize": "32768", "analyzeduration": "1000000"}


def decode_container(source: BinaryIO, out_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Decode an encoded file read from `source` (anything with `read(n)`; with
    `seek` and `tell` too for containers that need them, like mp4) into mono
    float32 pieces at `out_rate`, as its frames are decoded.

    Raises `UnsupportedFormat` when FFmpeg cannot make audio of it."""
    import av  # imported here: only encoded uploads need it

    try:
        with av.open(source, mode="r", options=PROBE_OPTIONS) as container:
            if not container.streams.audio:
                raise UnsupportedFormat("the uploaded file has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    except av.FFmpegError as exc:
        raise UnsupportedFormat(f"could not decode the uploaded audio: {exc}") from None
