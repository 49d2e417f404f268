"""Audio sources for the clients: files decoded with PyAV, microphones, and a
WAV file that behaves like a microphone.

A microphone is anything with `sounddevice.RawInputStream`'s shape: built with a
`callback(indata, frames, time, status)` that an audio thread calls with PCM16
blocks, plus `samplerate`, `start()`, `stop()` and `close()`. `WavInputStream`
has that shape too, so `captiond mic` runs the same code path on a WAV file
(tests, demos) as on a real device.
"""

from __future__ import annotations

import asyncio
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SAMPLE_RATE = 16000  # what `captiond file` sends; the server's native rate
BLOCK_SECONDS = 0.1  # ~100 ms frames: low latency, few WebSocket messages

Callback = Callable[[Any, int, Any, Any], None]


class AudioDecodeError(Exception):
    """A file that PyAV cannot open or that holds no audio."""


class MicrophoneError(Exception):
    """No microphone support here (PortAudio or sounddevice missing), or a bad device."""


class InputStream(Protocol):
    samplerate: float

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


# ---- files ------------------------------------------------------------------------


def decode_audio(path: str | Path, rate: int = SAMPLE_RATE) -> bytes:
    """Any audio or video file → mono PCM16 little-endian at `rate`."""
    import av  # imported here: only `captiond file` needs FFmpeg

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{path}: no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            parts = []
            for frame in container.decode(container.streams.audio[0]):
                parts.extend(_plane(f) for f in resampler.resample(frame))
            parts.extend(_plane(f) for f in resampler.resample(None))  # flush
    except (OSError, av.FFmpegError) as exc:
        raise AudioDecodeError(f"{path}: cannot decode ({_strerror(exc)})") from None
    return b"".join(parts)


def probe_duration(path: str | Path) -> float:
    """Seconds of audio a file claims to hold (0.0 when it does not say); raises
    AudioDecodeError for a file that is not audio, before anything is sent."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return (container.duration or 0) / av.time_base
    except (OSError, av.FFmpegError) as exc:
        raise AudioDecodeError(f"{path}: cannot decode ({_strerror(exc)})") from None


def decode_blocks(path: str | Path, block_seconds: float, skip_seconds: float = 0.0,
                  rate: int = SAMPLE_RATE) -> Iterator[bytes]:
    """Like `decode_audio`, as blocks of `block_seconds` while decoding goes on,
    so a long recording is never held whole; the first `skip_seconds` are dropped."""
    import av

    block = int(rate * block_seconds) * 2
    skip = int(rate * skip_seconds) * 2
    pending = bytearray()
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{path}: no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(container.streams.audio[0]):
                for part in resampler.resample(frame):
                    pending += _plane(part)
                skip = _drop(pending, skip)
                while len(pending) >= block:
                    yield bytes(pending[:block])
                    del pending[:block]
            for part in resampler.resample(None):  # flush
                pending += _plane(part)
    except (OSError, av.FFmpegError) as exc:
        raise AudioDecodeError(f"{path}: cannot decode ({_strerror(exc)})") from None
    _drop(pending, skip)
    if pending:
        yield bytes(pending)


def _drop(pending: bytearray, count: int) -> int:
    """Drop up to `count` bytes from the front; return how many are still to drop."""
    dropped = min(count, len(pending))
    del pending[:dropped]
    return count - dropped


def _plane(frame: Any) -> bytes:
    # s16 mono is packed: the first plane holds exactly samples * 2 bytes (plus padding).
    return bytes(frame.planes[0])[: frame.samples * 2]


def _strerror(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


async def paced_blocks(
    pcm: bytes,
    rate: int = SAMPLE_RATE,
    realtime: bool = True,
    on_sent: Callable[[float], None] | None = None,
) -> AsyncIterator[bytes]:
    """Cut PCM16 into ~100 ms blocks; with `realtime`, no faster than it plays.

    Pacing follows the clock from the first block, not sleeps per block, so
    scheduling jitter does not add up over a long file."""
    loop = asyncio.get_running_loop()
    block = int(rate * BLOCK_SECONDS) * 2
    started = loop.time()
    for offset in range(0, len(pcm), block):
        seconds = offset / 2 / rate
        if realtime:
            await asyncio.sleep(max(0.0, started + seconds - loop.time()))
        yield pcm[offset : offset + block]
        if on_sent is not None:
            on_sent(min(len(pcm), offset + block) / 2 / rate)


# ---- microphones ------------------------------------------------------------------


def open_microphone(device: int | str | None, callback: Callback) -> InputStream:
    """A sounddevice input stream at the device's own rate (the server resamples)."""
    sd = import_sounddevice()
    try:
        rate = int(sd.query_devices(device, "input")["default_samplerate"])
        return sd.RawInputStream(samplerate=rate, blocksize=int(rate * BLOCK_SECONDS),
                                 device=device, channels=1, dtype="int16", callback=callback)
    except (ValueError, sd.PortAudioError) as exc:
        raise MicrophoneError(f"cannot open the microphone: {exc}") from None


def import_sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise MicrophoneError(
            f"microphone support unavailable ({exc}); install PortAudio "
            "(Debian: apt install libportaudio2) and `pip install sounddevice`"
        ) from None
    return sounddevice


def list_devices() -> str:
    return str(import_sounddevice().query_devices())


class WavInputStream:
    """A WAV file played into `callback` at real-time pace from a thread, like a
    sounddevice stream. After the file it feeds silence (`after_end="silence"`, a
    quiet room) or nothing (`"stop"`, a muted mic); `finished` is set then."""

    def __init__(self, path: str | Path, callback: Callback, *, after_end: str = "silence",
                 speed: float = 1.0) -> None:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise ValueError(f"{path}: WavInputStream plays 16-bit PCM only")
            self.samplerate = float(wav.getframerate())
            self._channels = wav.getnchannels()
            self._pcm = wav.readframes(wav.getnframes())
        self._callback, self._after_end, self._speed = callback, after_end, speed
        self.blocksize = int(self.samplerate * BLOCK_SECONDS)
        self.finished = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._play, name="wav-input", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> WavInputStream:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _play(self) -> None:
        block_bytes = self.blocksize * 2 * self._channels
        period = BLOCK_SECONDS / self._speed
        started = time.monotonic()
        for n, offset in enumerate(range(0, len(self._pcm), block_bytes)):
            if self._wait_until(started + n * period):
                return
            self._deliver(self._pcm[offset : offset + block_bytes])
        self.finished.set()
        silence = bytes(block_bytes)
        n = len(self._pcm) // block_bytes + 1
        while self._after_end == "silence" and not self._wait_until(started + n * period):
            self._deliver(silence)
            n += 1

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until `deadline`; True if stopped meanwhile."""
        return self._stopped.wait(max(0.0, deadline - time.monotonic()))

    def _deliver(self, data: bytes) -> None:
        if self._channels > 1:  # mix down, as a mono sounddevice stream would
            frames = np.frombuffer(data, "<i2").reshape(-1, self._channels)
            data = frames.mean(axis=1).astype("<i2").tobytes()
        self._callback(data, len(data) // 2, None, _NO_STATUS)


class _NoStatus:
    """Stands in for sounddevice.CallbackFlags with no flag set (it is falsy)."""

    def __bool__(self) -> bool:
        return False


_NO_STATUS = _NoStatus()
