"""One client WebSocket: moves bytes into a `CaptionSession` and events out.

All protocol decisions live in the session; this class only receives frames,
wakes the batch runner, and sends what the session emits, closing the socket
with the event's close code after an `Error` (DESIGN §4).
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server import protocol
from server.runner import InferenceRunner
from streaming.events import Error
from streaming.session import CaptionSession, SessionState

log = logging.getLogger("captiond.connection")


class CaptionConnection:
    def __init__(
        self, websocket: ServerConnection, session: CaptionSession, runner: InferenceRunner,
        idle_timeout_s: float,
    ) -> None:
        self.websocket = websocket
        self.session = session
        self.runner = runner
        self.idle_timeout_s = idle_timeout_s
        self._outbox = asyncio.Event()

    async def run(self) -> None:
        self.runner.attach(self.session, self._outbox.set)
        sender = asyncio.create_task(self._send_loop())
        try:
            await self._receive_loop()
        finally:
            self.session.disconnect(self._now())
            self.runner.notify(self.session)
            await self._finish(sender)
            self.runner.detach(self.session)

    async def _receive_loop(self) -> None:
        while self.session.state is not SessionState.CLOSED:
            try:
                message = await asyncio.wait_for(self.websocket.recv(), self.idle_timeout_s)
            except TimeoutError:
                # Busy means we are the slow side and the client waits for results.
                if self.session.expire_if_idle(self._now(), self.idle_timeout_s):
                    self._outbox.set()
                continue
            except ConnectionClosed:
                return
            if isinstance(message, str):
                self.session.receive_text(message, self._now())
            else:
                self.session.receive_audio(message, self._now())
            self.runner.notify(self.session)
            self._outbox.set()

    async def _send_loop(self) -> None:
        while True:
            await self._outbox.wait()
            self._outbox.clear()
            for event in self.session.events():
                if not await self._send(event):
                    return
            if self.session.state is SessionState.CLOSED:
                return  # the client is gone or was refused: nothing more to send

    async def _send(self, event) -> bool:
        extra = {"speaker": self.session.config.speaker, "room": self.session.config.room} if (
            self.session.config is not None and not isinstance(event, Error)
        ) else None
        try:
            await self.websocket.send(protocol.encode(event, extra))
            if isinstance(event, Error):
                log.info("closing %s: %s (%s)", self.websocket.remote_address, event.code,
                         event.message)
                await self.websocket.close(event.close_code, event.code)
                return False
        except ConnectionClosed:
            return False
        return True

    async def _finish(self, sender: asyncio.Task) -> None:
        """Let the sender flush what is ready (an error, say), then stop it."""
        self._outbox.set()
        done, _ = await asyncio.wait({sender}, timeout=5.0)
        if not done:
            sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
