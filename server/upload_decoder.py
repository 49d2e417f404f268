"""Encoded uploads (`wav_format` other than pcm) decoded off the event loop.

PyAV decodes synchronously and a long recording takes seconds, so each upload
gets a thread of its own. The thread reads the upload through `ByteFeed`, a
file-like object whose `read` blocks until the connection has received more
bytes, so streamable containers (wav, mp3, flac, ogg, webm…) are decoded
while they arrive and their audio reaches the session at once. Containers
that must seek (mp4 / m4a with the index at the end) fail that way before
the first frame; they are decoded again from the whole upload once it ended.

Errors never leave the thread as exceptions: the decoder's `finished()`
returns the message the client is told (docs/design.md §4: 1003).
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Callable, Iterator

import numpy as np

from streaming.audio import decode_container
from streaming.engine import SAMPLE_RATE
from streaming.errors import UnsupportedFormat
from streaming.session import CaptionSession, SessionState

log = logging.getLogger("captiond.uploads")

DELIVERY_SAMPLES = SAMPLE_RATE // 2  # hand decoded audio to the loop in ~0.5 s pieces


class UploadAborted(Exception):
    """The connection no longer wants this upload's audio."""


class ByteFeed:
    """A blocking, forward-only file for FFmpeg: bytes arrive from the loop
    (`put`), the decoder thread reads them. Until `release()` it keeps every
    byte, so a container that cannot be read forward can be decoded again
    from the start (`whole`); after it, only what is not yet read."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0  # next byte to read, in _buffer
        self._keep = True
        self._ended = False
        self._aborted = False
        self._changed = threading.Condition()

    def put(self, data: bytes) -> None:
        with self._changed:
            self._buffer += data
            self._changed.notify()

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify()

    def abort(self) -> None:
        with self._changed:
            self._aborted = True
            self._changed.notify()

    def read(self, size: int = -1) -> bytes:
        with self._changed:
            self._changed.wait_for(lambda: self._aborted or self._ended
                                   or self._position < len(self._buffer))
            if self._aborted:
                raise UploadAborted
            end = len(self._buffer) if size < 0 else self._position + size
            chunk = bytes(self._buffer[self._position : end])
            self._position += len(chunk)
            if not self._keep:
                self._forget_read()
            return chunk

    def release(self) -> None:
        """Decoding goes forward from here on: forget what was read."""
        with self._changed:
            self._keep = False
            self._forget_read()

    def _forget_read(self) -> None:
        del self._buffer[: self._position]
        self._position = 0

    def whole(self) -> bytes | None:
        """Every byte of the upload, once it ended (None after `release`)."""
        with self._changed:
            self._changed.wait_for(lambda: self._aborted or self._ended)
            if self._aborted:
                raise UploadAborted
            return bytes(self._buffer) if self._keep else None


class UploadDecoder:
    """One upload's decoding thread. `feed`, `end`, `abort` and `finished` are
    called on the event loop; decoded audio is handed to `on_audio` there too."""

    def __init__(self, on_audio: Callable[[np.ndarray], None], name: str = "upload") -> None:
        self._loop = asyncio.get_running_loop()
        self._on_audio = on_audio
        self._feed = ByteFeed()
        self._done: asyncio.Future[str | None] = self._loop.create_future()
        self._aborted = False
        self._thread = threading.Thread(target=self._run, name=f"captiond-{name}", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        self._feed.put(data)

    def end(self) -> None:
        """The client sent the whole upload."""
        self._feed.end()

    def abort(self) -> None:
        """Stop decoding and drop what is not yet delivered."""
        self._aborted = True
        self._feed.abort()

    async def finished(self) -> str | None:
        """Wait until every decoded piece was delivered; the error, if any.
        Shielded: a cancelled waiter (server drain) leaves decoding running."""
        return await asyncio.shield(self._done)

    # ---- the decoding thread -------------------------------------------------

    def _run(self) -> None:
        error = None
        try:
            self._decode()
        except UploadAborted:
            pass
        except UnsupportedFormat as exc:
            error = str(exc)
        except Exception as exc:  # PyAV on hostile bytes: still the upload's fault
            log.warning("decoding an upload failed: %s: %s", type(exc).__name__, exc)
            error = "could not decode the uploaded audio"
        self._call_on_loop(self._finish, error)

    def _decode(self) -> None:
        try:
            self._deliver(decode_container(self._feed))
        except UnsupportedFormat:
            if self._delivered_any:
                raise
            whole = self._feed.whole()  # e.g. mp4 with its index at the end: needs seeking
            if not whole:
                raise
            self._deliver(decode_container(io.BytesIO(whole)))

    _delivered_any = False

    def _deliver(self, pieces: Iterator[np.ndarray]) -> None:
        batch: list[np.ndarray] = []
        size = 0
        for piece in pieces:
            if not self._delivered_any:
                self._delivered_any = True
                self._feed.release()  # it reads forward: keep no copy of the upload
            batch.append(piece)
            size += len(piece)
            if size >= DELIVERY_SAMPLES:
                self._call_on_loop(self._hand_over, np.concatenate(batch))
                batch, size = [], 0
        if batch:
            self._call_on_loop(self._hand_over, np.concatenate(batch))

    def _call_on_loop(self, fn: Callable, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed (server stopped): nobody to tell
            self._feed.abort()

    # ---- back on the event loop ----------------------------------------------

    def _hand_over(self, samples: np.ndarray) -> None:
        if not self._aborted:
            self._on_audio(samples)

    def _finish(self, error: str | None) -> None:
        if not self._done.done():
            self._done.set_result(None if self._aborted else error)


class ConnectionUpload:
    """Moves one connection's encoded upload between its session and a decoder:
    bytes the session accepted go to the decoder's thread, decoded audio comes
    back to the session, and the upload ends once both sides are done."""

    def __init__(self, session: CaptionSession, wake: Callable[[], None], peer: object) -> None:
        self.session = session
        self.wake = wake  # the session may have new jobs and events
        self.peer = peer
        self._decoder: UploadDecoder | None = None

    def take(self) -> bool:
        """After each client frame: pass new bytes on to the decoder. True when
        the client ended the upload: `finish` it before reading the next frame."""
        if data := self.session.take_upload():
            if self._decoder is None:
                self._decoder = UploadDecoder(self._on_audio)
            self._decoder.feed(data)
        return self.session.upload_ended

    async def finish(self, client_gone: bool = False) -> None:
        """Decode the rest of an open upload, then end it in the session."""
        if self.session.state is not SessionState.STREAMING:
            self.abort()  # the session closed (error, idle): its audio is not wanted
            return
        error = None
        if self._decoder is not None:
            self._decoder.end()
            error = await self._decoder.finished()
            self._decoder = None
        if error and client_gone:  # nobody to tell: one line in the log
            log.info("upload from %s ended undecodable: %s", self.peer, error)
        self.session.end_upload(_now(), error)
        self.wake()

    def abort(self) -> None:
        if self._decoder is not None:
            self._decoder.abort()
            self._decoder = None

    def _on_audio(self, samples: np.ndarray) -> None:
        self.session.receive_decoded(samples, _now())
        self.wake()


def _now() -> float:
    return asyncio.get_running_loop().time()
