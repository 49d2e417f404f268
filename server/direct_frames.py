"""Audio frames straight from websockets' parser to the connection.

A live stream sends a small binary frame every 60 ms or so. Through `recv()`
each one is queued, wakes the receiving task and is taken off the queue
again: at hundreds of streams per process that machinery cost about as much
as everything captiond does with the frame (bench/RESULTS.md). So while a
connection's receive loop waits in `recv()` with nothing queued, it may lend
this connection a handler that takes each complete binary frame as it is
parsed. Any other data frame goes to `recv()` as usual and takes the handler
away, so frames are never handled out of their order (docs/workers.md).
"""

from __future__ import annotations

from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode


class DirectFramesConnection(ServerConnection):
    """websockets' `ServerConnection`, plus `binary_handler`: set only while the
    one reader waits in `recv()` (so nothing is queued before the frames it takes)."""

    binary_handler: Callable[[bytes], None] | None = None

    def process_event(self, event: object) -> None:
        handler = self.binary_handler
        if handler is not None and isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            if event.opcode is Opcode.BINARY and event.fin:
                data = event.data
                handler(data if type(data) is bytes else bytes(data))
                return
            self.binary_handler = None  # recv() takes this one: those after it queue behind
        super().process_event(event)


DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
