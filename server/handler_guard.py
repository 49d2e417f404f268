"""The last line of defence around every WebSocket handler (docs/design.md §8).

Client mistakes never reach here: the session turns them into `Error` events.
What does reach here is our own bug. It must not escape into websockets (which
would log a traceback per connection and close with a bare 1011): the client
is told the server failed, with 1011 and no internals, and the log gets one
line naming the exception (its traceback too at DEBUG level).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from websockets.asyncio.server import ServerConnection

from server import protocol
from streaming.errors import INTERNAL_ERROR
from streaming.events import Error

log = logging.getLogger("captiond.connection")

FAILED = Error("internal_error", "the server failed on this connection; see its log",
               INTERNAL_ERROR)


async def guarded(handler: Awaitable[None], websocket: ServerConnection) -> None:
    """Await `handler`; on an exception, log one line and close with 1011."""
    try:
        await handler
    except Exception as exc:
        log.error("connection from %s failed: %s: %s", websocket.remote_address,
                  type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        try:
            await websocket.send(protocol.dumps(protocol.to_message(FAILED)))
            await websocket.close(FAILED.close_code, FAILED.code)
        except Exception:  # the socket is gone or broken: nobody left to tell
            pass
