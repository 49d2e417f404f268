"""The channel between front-end workers and the engine process (docs/workers.md).

One Unix-domain stream socket per worker, carrying length-prefixed frames.
Each frame is one pickle (protocol 5) of a list of messages: every message
sent during one event-loop turn goes out in one write, so a turn that
forwards the chunks of many streams costs one syscall, not one per chunk.
Messages are plain tuples `(kind, *fields)`; audio travels as float32 numpy
arrays, which pickle copies as one buffer.

Why pickle: measured (bench/frontend_cost.py) against a hand-written
struct + bytes encoding of the same online job, it costs a few µs more per
message, which is small beside the per-frame front-end work, and it carries
`StreamOptions` and `FinalResult` without a schema to keep in step. The socket
lives in a private temporary directory (mode 0700): only this user's
processes can connect, so unpickling what arrives trusts no one new.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Callable

log = logging.getLogger("captiond.link")

HEADER_BYTES = 4
MAX_FRAME_BYTES = 1 << 30  # a sanity bound: a garbled header must not allocate 4 GB


def encode_frame(messages: list[tuple]) -> bytes:
    body = pickle.dumps(messages, protocol=5)
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def decode_body(body: bytes) -> list[tuple]:
    return pickle.loads(body)


class Link:
    """One end of the channel: `send` buffers, one flush per loop turn;
    `receive_forever` hands each arriving frame's messages to `on_messages`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        on_messages: Callable[[list[tuple]], None],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.on_messages = on_messages
        self._outgoing: list[tuple] = []
        self.closed = False

    def send(self, message: tuple) -> None:
        if self.closed:
            return  # the other end is gone; its sessions are being dropped
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(message)

    def _flush(self) -> None:
        messages, self._outgoing = self._outgoing, []
        if messages and not self.closed and not self.writer.is_closing():
            self.writer.write(encode_frame(messages))

    async def receive_forever(self) -> None:
        """Until the other end closes; then `closed` is set."""
        try:
            while True:
                header = await self.reader.readexactly(HEADER_BYTES)
                size = int.from_bytes(header, "big")
                if size > MAX_FRAME_BYTES:
                    raise ValueError(f"link frame of {size} bytes")
                self.on_messages(decode_body(await self.reader.readexactly(size)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed = True

    async def close(self) -> None:
        self._flush()
        self.closed = True
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
