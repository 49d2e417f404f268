"""Audio frames straight from the socket to the connection.

A live stream sends a small binary frame every 60 ms or so. Through `recv()`
each one is parsed by websockets' generator-based parser, queued, wakes the
receiving task and is taken off the queue again: at hundreds of streams per
process that machinery cost about as much as everything captiond does with
the frame (bench/RESULTS.md, docs/workers.md). So while a connection's
receive loop waits in `recv()` with nothing queued, it lends this connection
a handler, and:

- bytes that are whole, unfragmented, masked binary frames (what every live
  client sends) are cut and unmasked here and handed to it as they arrive;
- anything else (text, control frames, fragments, a frame cut across reads,
  a size past the limit) goes to websockets as usual, from the first byte
  this path did not take. A data frame that reaches websockets takes the
  handler away, so frames are never handled out of their order.

The path is only taken when websockets' parser waits at a frame boundary,
so the two parsers never share a frame.
"""

from __future__ import annotations

from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import State

FIN_BINARY = 0x82  # FIN set, no RSV bits, opcode 2
MASKED = 0x80
DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
INTERNALS = ("reader", "parser", "current_size", "max_message_size", "max_fragment_size")


class DirectFramesConnection(ServerConnection):
    """websockets' `ServerConnection`, plus `binary_handler`: set only while the
    one reader waits in `recv()` (so nothing is queued before the frames it takes)."""

    binary_handler: Callable[[bytes], None] | None = None
    # websockets' parser internals that `_parser_idle` reads are there (17.x);
    # checked at the first frame, not at every read.
    _internals: bool | None = None

    def data_received(self, data: bytes) -> None:
        taken = self._take_binary_frames(data) if self.binary_handler is not None else 0
        if taken < len(data):
            super().data_received(data[taken:] if taken else data)

    def process_event(self, event: object) -> None:
        handler = self.binary_handler
        if handler is not None and isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            if event.opcode is Opcode.BINARY and event.fin:
                data = event.data
                handler(data if type(data) is bytes else bytes(data))
                return
            self.binary_handler = None  # recv() takes this one: those after it queue behind
        super().process_event(event)

    def _take_binary_frames(self, data: bytes) -> int:
        """Hand every whole binary frame at the start of `data` to the handler;
        the number of bytes taken (0 when websockets must parse from here)."""
        protocol = self.protocol
        if self._internals is None:
            self._internals = all(hasattr(protocol, name) for name in INTERNALS)
        if (not self._internals or protocol.state is not State.OPEN or protocol.extensions
                or not _parser_idle(protocol)):
            return 0
        limit = _frame_limit(protocol.max_message_size, protocol.max_fragment_size)
        at, end = 0, len(data)
        while at + 6 <= end and data[at] == FIN_BINARY and data[at + 1] & MASKED:
            length, header = data[at + 1] & 0x7F, 6
            if length == 126:
                if at + 8 > end:
                    break
                length, header = int.from_bytes(data[at + 2 : at + 4], "big"), 8
            elif length == 127:
                break  # 64-bit lengths: far past any audio frame; websockets judges them
            if (limit is not None and length > limit) or at + header + length > end:
                break
            handler = self.binary_handler
            if handler is None:  # taken away by the last frame (the connection failed)
                break
            start = at + header
            at = start + length
            handler(apply_mask(data[start:at], data[start - 4 : start]))
        return at


def _parser_idle(protocol: object) -> bool:
    """websockets' parser waits for the first byte of a frame, none buffered.
    Read from websockets' internals (17.x, `INTERNALS`); a version without them
    never gets here, and all its frames take websockets' own path."""
    if protocol.reader.buffer or protocol.current_size is not None:
        return False
    waiting_in = protocol.parser  # generators delegating with `yield from`
    while (inner := getattr(waiting_in, "gi_yieldfrom", None)) is not None:
        waiting_in = inner
    return getattr(waiting_in, "__name__", None) == "at_eof"  # StreamReader.at_eof


def _frame_limit(message: int | None, fragment: int | None) -> int | None:
    if message is None:
        return fragment
    return message if fragment is None else min(message, fragment)
