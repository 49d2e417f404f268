"""One client WebSocket: moves bytes into a `CaptionSession` and events out.

All protocol decisions live in the session; this class only receives frames,
wakes the batch runner, and sends what the session emits, closing the socket
with the event's close code after an `Error` (docs/design.md §4). A `StreamStarted`
event is handed to the server's one admission call before the next frame is
read, so a refused stream never has audio accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server import protocol
from server.connection_report import ConnectionReport
from server.direct_frames import DirectFramesConnection
from server.loop_monitor import FrameMeter
from server.metrics import ServerMetrics
from server.store import FinalNotStored, StreamInfo
from server.upload_decoder import ConnectionUpload
from streaming.errors import GOING_AWAY, POLICY_VIOLATION, TRY_AGAIN_LATER
from streaming.events import EndAcknowledged, Error, Event, Final, Partial, StreamStarted
from streaming.session import CaptionSession, SessionState

log = logging.getLogger("captiond.connection")

SENDER_GRACE_S = 120.0  # a disconnected speaker's queued utterances still finish
SEND_STALL_S = 20.0  # a client that takes no message for this long is closed
STORE_FAILED_MESSAGE = "the transcript store is failing, so captions cannot be kept; retry later"


class Runner(Protocol):
    """What a connection needs of the batch runner (local or in another process)."""

    def attach(self, session: CaptionSession, on_events: Callable[[], None]) -> None: ...
    def notify(self, session: CaptionSession) -> None: ...
    def detach(self, session: CaptionSession) -> None: ...


class CaptionConnection:
    def __init__(
        self,
        websocket: ServerConnection,
        session: CaptionSession,
        runner: Runner,
        idle_timeout_s: float,
        publish: Callable[[str, dict[str, Any], str, bool], None] | None = None,
        admit: Callable[[CaptionSession], Awaitable[str | None]] | None = None,
        frame_meter: FrameMeter | None = None,
        record: Callable[[str, StreamInfo, dict[str, Any]], Awaitable[dict[str, Any]]]
        | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.websocket = websocket
        self.report = ConnectionReport(websocket.remote_address, metrics)
        self.publish = publish  # rooms fan-out: (room, message, its JSON text, utterance_final)
        self.admit = admit  # the server's admission call: why a live stream is refused
        self.record = record  # the transcript store: a room final, returned with its id
        self._stream: tuple[object, StreamInfo] | None = None  # (its config, the stream)
        self._config_at = time.time()  # when the current config arrived
        self.frame_meter = frame_meter or FrameMeter()  # per-frame cost, for /health
        self.session = session
        self.runner = runner
        self.idle_timeout_s = idle_timeout_s
        self._pending: deque[Event] = deque()  # taken from the session, not yet sent
        self._started: list[StreamStarted] = []  # awaiting the admission decision
        self._outbox = asyncio.Event()  # the session may have events to send
        self._progress = asyncio.Event()  # a batch finished for this session
        self._receiver: asyncio.Task | None = None
        self._direct_failure: Exception | None = None  # raised in a frame handled directly
        self._draining = False
        # The server's access decision on each stream start (docs/security.md):
        # (code, message) refuses it with close 1008; and a count of errors sent.
        self.authorize: Callable[[CaptionSession], tuple[str, str] | None] | None = None
        self.on_error: Callable[[str], None] | None = None
        self._closing: asyncio.Task | None = None  # closing a client that stopped reading
        # encoded uploads are decoded on a thread, never on the loop
        self._upload = ConnectionUpload(session, self._on_input, websocket.remote_address)

    async def run(self) -> None:
        self.runner.attach(self.session, self._on_results)
        sender = asyncio.create_task(self._send_loop())
        self._receiver = asyncio.create_task(self._receive_loop())
        watchdog = asyncio.create_task(self._expire_when_idle())
        try:
            await asyncio.wait({self._receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not self._receiver.done():  # the sender failed (a bug): stop reading
                self._receiver.cancel()
                await asyncio.wait({self._receiver})
            if self._draining:
                await self._drain_session()
            else:
                await self._upload.finish(client_gone=True)  # its audio still counts
                self.session.disconnect(self._now())
                self.runner.notify(self.session)
        finally:
            watchdog.cancel()
            self._upload.abort()
            try:
                await self._stop_sender(sender)
            finally:
                self.runner.detach(self.session)
                self.report.finish(self._draining, self.websocket.close_code)
        if not self._receiver.cancelled() and self._receiver.exception() is not None:
            raise self._receiver.exception()  # a bug: the server's guard reports it (1011)
        if self._draining:
            await self.websocket.close(GOING_AWAY, "server shutting down")

    def drain(self) -> None:
        """Server shutdown: stop reading, finish the open stream, then close."""
        self._draining = True
        if self._receiver is not None:
            self._receiver.cancel()

    def _on_results(self) -> None:
        self._outbox.set()
        self._progress.set()

    def _on_input(self) -> None:
        """The session took input (here, decoded upload audio): offer its work."""
        self.runner.notify(self.session)
        self._outbox.set()

    def _on_audio(self, frame: bytes) -> None:
        """One audio frame. Most complete no chunk: they wake neither the
        scheduler nor the sender (a per-frame cost at hundreds of streams)."""
        started = perf_counter()
        queued = self.session.queued_entries
        self.session.receive_audio(frame, self._now())
        self.report.audio(len(frame), self.session.config)
        if self.session.queued_entries != queued:
            self.runner.notify(self.session)
        if self.session.has_events or self.session.state is SessionState.CLOSED:
            self._outbox.set()
        self.frame_meter.record(perf_counter() - started)  # loop_monitor.py

    async def _receive_loop(self) -> None:
        while self.session.state is not SessionState.CLOSED:
            await self._hold_back_upload()
            try:
                message = await self._next_message()
            except ConnectionClosed:
                return
            if isinstance(message, str):
                config = self.session.config
                self.session.receive_text(message, self._now())
                if self.session.config is not config:  # a new stream: its wall-clock start
                    self._config_at = time.time()
                self._collect()
                await self._decide_admission()
                self._on_input()
            else:
                self._on_audio(message)
            if self._upload.take():  # the client ended its upload: decode the rest first
                await self._upload.finish()

    async def _next_message(self) -> str | bytes:
        """The next message for the receive loop. While it waits, a live PCM
        stream's audio frames are handled as websockets parses them
        (server/direct_frames.py): nothing is queued then, and uploads, whose
        reading is held back, never take this path."""
        live_pcm = self.session.live and not self.session.config.encoded
        if not live_pcm or not isinstance(self.websocket, DirectFramesConnection):
            return await self.websocket.recv()
        self.websocket.binary_handler = self._direct_audio
        try:
            return await self.websocket.recv()
        except asyncio.CancelledError:
            if self._direct_failure is not None:  # a bug, reported as from recv's path
                raise self._direct_failure from None
            raise
        finally:
            self.websocket.binary_handler = None

    def _direct_audio(self, frame: bytes) -> None:
        try:
            self._on_audio(frame)
        except Exception as exc:  # noqa: BLE001 - ends the receive loop with it, as recv's path
            self.websocket.binary_handler = None
            self._direct_failure = exc
            self._receiver.cancel()

    async def _expire_when_idle(self) -> None:
        """Close a connection that sent nothing for the idle timeout: one timer
        per idle period, not one set and cancelled around every frame's recv.
        The error it sends closes the socket, which ends the receive loop."""
        while self.session.state is not SessionState.CLOSED:
            quiet = self._now() - self.session.last_activity
            if quiet < self.idle_timeout_s:
                await asyncio.sleep(self.idle_timeout_s - quiet)
            # A session waiting for the model is not idle: the client waits for us.
            elif self.session.expire_if_idle(self._now(), self.idle_timeout_s):
                self._outbox.set()
                return
            else:
                await asyncio.sleep(self.idle_timeout_s)

    async def _hold_back_upload(self) -> None:
        """An upload arrives faster than the model takes it: read nothing more
        (TCP then holds the client back) until its backlog shrinks."""
        while self.session.backlogged:
            self._progress.clear()
            await self._progress.wait()

    def _collect(self) -> None:
        """Take the session's events: wire events to send, stream starts to decide."""
        for event in self.session.events():
            if isinstance(event, StreamStarted):
                self._started.append(event)
            else:
                self._pending.append(event)

    async def _decide_admission(self) -> None:
        while self._started:
            self._started.pop(0)
            refusal = self.authorize(self.session) if self.authorize else None
            if refusal is not None:  # before any audio is read: nothing else happens
                self.session.refuse(*refusal, POLICY_VIOLATION)
                self._collect()
                self._started.clear()
                return
            if self.admit is None or not self.session.live:
                continue  # e.g. a config that also ended its stream: nothing to admit
            reason = await self.admit(self.session)
            if reason is not None:
                log.warning("refused a stream from %s: %s", self.websocket.remote_address, reason)
                self.report.refused("overloaded")
                self.session.refuse("overloaded", reason, TRY_AGAIN_LATER)
                self._collect()

    async def _drain_session(self) -> None:
        self.session.receive_end(self._now())  # docs/design.md §8: finalise open segments
        self._on_input()
        if self._upload.take():
            await self._upload.finish()
        while self.session.busy:
            await self._progress.wait()
            self._progress.clear()
        self.session.disconnect(self._now())  # nothing more will be read or sent
        self._outbox.set()

    async def _send_loop(self) -> None:
        """Send events while the socket is open; keep feeding the room after it
        closed, until the session's last utterance is final (docs/design.md §8)."""
        socket_open = True
        while True:
            await self._outbox.wait()
            self._outbox.clear()
            self._collect()
            while self._pending:
                event = self._pending.popleft()
                try:
                    text = await self._encode(event)
                except FinalNotStored:  # logged by the rooms; sent to no one
                    self._end_unstored()
                    continue
                if socket_open:
                    socket_open = await self._send(event, text)
            if self.session.state is SessionState.CLOSED and not self.session.busy:
                self._collect()  # what was emitted while the last ones were sent
                if not self._pending:
                    return
                self._outbox.set()

    async def _encode(self, event: Event) -> str:
        """The event's wire text, serialised once for the client and the room.
        A room's final is stored before anyone is sent it (docs/design.md §8)."""
        self.report.saw(event)
        config = self.session.config
        if config is None or isinstance(event, Error):
            return protocol.dumps(protocol.to_message(event))
        if not config.room or self.publish is None:
            return protocol.dumps(protocol.to_message(event, {"speaker": config.speaker}))
        stream = self._stream_info(config)
        message = protocol.to_message(event, {"speaker": config.speaker, "room": config.room,
                                              "stream": stream.key})
        final = isinstance(event, Final) or (isinstance(event, Partial) and event.final)
        if final and self.record is not None:
            message = await self.record(config.room, stream, message)
        text = protocol.dumps(message)
        if not isinstance(event, EndAcknowledged):
            self.publish(config.room, message, text, final)
        return text

    def _end_unstored(self) -> None:
        """The store kept failing a final (docs/reliability.md): what follows it
        is not sent either; the client gets an error and 1011 instead."""
        self._pending.clear()
        self.session.abort("store_unavailable", STORE_FAILED_MESSAGE)
        self._collect()

    def _stream_info(self, config: object) -> StreamInfo:
        """The room stream a config started (a connection may run several in turn)."""
        if self._stream is None or self._stream[0] is not config:
            stream = StreamInfo(uuid.uuid4().hex[:12], config.speaker, config.wav_name,
                                self._config_at)
            self._stream = (config, stream)
        return self._stream[1]

    async def _send(self, event: Event, text: str) -> bool:
        try:
            try:
                async with asyncio.timeout(SEND_STALL_S):
                    await self.websocket.send(text)  # waits while the socket buffer is full
            except TimeoutError:
                self._close_stalled()
                return False
            if isinstance(event, Error):
                if self.on_error is not None:
                    self.on_error(event.code)
                log.info("closing %s: %s (%s)", self.websocket.remote_address, event.code,
                         event.message)
                await self.websocket.close(event.close_code, event.code)
                return False
        except ConnectionClosed:
            return False
        return True

    async def _stop_sender(self, sender: asyncio.Task) -> None:
        """Let the sender finish: what is ready, and the finals still on the way."""
        self._outbox.set()
        done, _ = await asyncio.wait({sender}, timeout=SENDER_GRACE_S)
        if not done:
            sender.cancel()
        (outcome,) = await asyncio.gather(sender, return_exceptions=True)
        if isinstance(outcome, Exception):
            raise outcome  # a bug: the server's guard reports it (1011)

    def _close_stalled(self) -> None:
        """The client stopped reading (docs/design.md §8): what it did not take
        stays bounded; close it, and keep its finals going to its room."""
        log.info("closing %s: it stopped reading for %g s", self.websocket.remote_address,
                 SEND_STALL_S)
        self._closing = asyncio.create_task(self._close_unread())  # the room goes on meanwhile

    async def _close_unread(self) -> None:
        try:  # a close frame, if it still goes out; it would not read it for long either
            async with asyncio.timeout(SEND_STALL_S):
                await self.websocket.close(POLICY_VIOLATION, "not reading")
        except TimeoutError:
            self.websocket.transport.abort()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
