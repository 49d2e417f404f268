"""The captiond server: WebSocket + HTTP on one port, and its lifecycle.

Shape after uvicorn's server (docs/design.md §8): start → serve → drain on SIGTERM →
stop. Shared state lives in one `CaptionServer` object.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from server.config import ServerConfig
from server.connection import CaptionConnection
from server.direct_frames import DirectFramesConnection
from server.engine_thread import EngineThread
from server.gate import Gate, viewer_room
from server.handler_guard import guarded
from server.loop_monitor import LoopMonitor
from server.metrics import ServerMetrics, describe_model
from server.ops_routes import (
    AdminCheck,
    ReadinessCheck,
    not_ready_reasons,
    respond_ops,
)
from server.rooms import RoomRegistry
from server.runner import InferenceRunner
from server.static import respond_static
from server.transcript_http import respond_transcript, viewer_after
from streaming.admission import AdmissionController
from streaming.engine import Engine
from streaming.errors import POLICY_VIOLATION
from streaming.session import CaptionSession

log = logging.getLogger("captiond.server")

SUBPROTOCOL = "binary"  # what FunASR's clients ask for


class CaptionServer:
    def __init__(
        self, config: ServerConfig, engine: Engine, engine_thread: EngineThread | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.admission = AdmissionController(config.admission, config.batching.max_batch_size)
        self.runner = InferenceRunner(engine, config.batching, self.admission,
                                      engine_thread or EngineThread(config.threads))
        self.runner.stall_s = config.engine_stall_s
        self._init_front()
        self.runner.metrics = self.metrics
        describe_model(self.metrics, config.models, engine)

    def _init_front(self) -> None:
        self.connections: set[CaptionConnection] = set()
        self.rooms = RoomRegistry(self.config.rooms)
        self.gate = Gate(self.config.access, self.config.connection_limits)  # docs/security.md
        self.draining = False
        self._server: Server | None = None
        self._runner_task: asyncio.Task | None = None
        self.loop_monitor = LoopMonitor()  # where the loop's time goes, for /health
        self.started = False  # models loaded and runner going: /readyz may say 200
        # each: None, or why /readyz says 503 (the rooms': the store fails writes)
        self.readiness_checks: list[ReadinessCheck] = [self.rooms.store_readiness]
        # /metrics: the admin token once access control is on (server/auth.py)
        self.admin_check: AdminCheck = self.gate.access.is_admin
        self.metrics = ServerMetrics()
        self.metrics.watch(lambda: len(self.connections), self.live_streams,
                           self.rooms.viewer_count, self.rooms.room_count,
                           lambda: not not_ready_reasons(self))

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    async def start(self, before_listen: Callable[[], Awaitable[None]] | None = None) -> None:
        await self.rooms.open()
        await self.start_backend()
        if before_listen is not None:
            await before_listen()  # the startup probe hands the port over (server/startup.py)
        await self.listen()

    async def start_backend(self) -> None:
        """Calibrate admission control and start the batch runner."""
        if self.config.calibrate:
            log.info("measuring capacity (--no-calibrate skips this)…")
            sizes = sorted({1, min(8, self.config.batching.max_batch_size)})
            measured = await self.runner.engine_thread.run(self.runner.calibrate, tuple(sizes))
            self.runner.record_calibration(measured)
            log.info("capacity: %s live streams in real time", self.admission.capacity())
        self._runner_task = asyncio.create_task(self.runner.run(), name="captiond-runner")
        self.loop_monitor.start()
        self.started = True

    async def listen(self, **options) -> None:
        """Accept clients on the configured port (`options`: more for `serve`)."""
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            select_subprotocol=_select_subprotocol,
            process_request=self._process_request,
            # Frames up to twice our limit reach the session, which answers with a
            # clear JSON error; beyond that websockets itself closes with 1009.
            max_size=2 * self.config.limits.max_frame_bytes,
            # No permessage-deflate: PCM barely compresses, and inflating every
            # audio frame on the event loop showed up in its profile under load.
            compression=None,
            create_connection=DirectFramesConnection,  # live audio skips recv()'s queue
            ssl=self.config.tls.context() if self.config.tls else None,
            **options,
        )
        log.info("captiond listening on %s://%s:%d (engine %s)",
                 "wss" if self.config.tls else "ws", self.config.host, self.port,
                 self.engine.name)

    async def _handle(self, websocket: ServerConnection) -> None:
        await guarded(self._serve(websocket), websocket)  # nothing escapes a handler

    async def _serve(self, websocket: ServerConnection) -> None:
        if not self.gate.take_address(websocket):
            await _refuse(websocket, "too_many_connections",
                          "too many connections from your address; close some and retry")
            return
        try:  # the address is counted inside try/finally (docs/design.md §8)
            room = viewer_room(websocket.request.path)
            if room is not None:
                await self.rooms.serve_viewer(room, websocket, viewer_after(websocket.request.path))
            else:
                await self._handle_speaker(websocket)
        finally:
            self.gate.give_back_address(websocket)

    async def _handle_speaker(self, websocket: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        session = CaptionSession(
            self.engine, self.config.endpoint, self.config.limits, now=loop.time()
        )
        connection = CaptionConnection(websocket, session, self.runner,
                                       self.config.idle_timeout_s, self._publish,
                                       self._admit, self.loop_monitor.frames, self.rooms.record,
                                       self.metrics)
        connection.authorize = lambda s: self.gate.stream_refusal(websocket.request, s)
        connection.on_error = self.gate.count_error
        self.connections.add(connection)
        try:  # counted inside try/finally so a failed handshake never leaks (docs/design.md §8)
            await connection.run()
        finally:
            self.connections.discard(connection)
            self.gate.forget(session)

    async def _process_request(self, connection: ServerConnection, request: Request
                               ) -> Response | None:
        if (answer := respond_ops(self, connection, request)) is not None:
            return answer
        if request.path.split("?")[0] == "/health":
            return _json_response(connection, self.gate.health_view(request, self.health()))
        if "upgrade" not in request.headers.get("Connection", "").lower():
            exported = await respond_transcript(connection, request, self.rooms.store,
                                                self.gate.access.viewer_refusal)
            return exported or respond_static(connection, request.path)
        if self.draining:
            self.metrics.refused.labels("draining").inc()
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Shutting down\n")
        return self.gate.handshake_refusal(connection, request)

    def _publish(self, room: str, message: dict, text: str, utterance_final: bool) -> None:
        self.rooms.publish(room, message, text, utterance_final)

    def live_streams(self, besides: CaptionSession | None = None) -> int:
        """Live streams on this process's connections, `besides` not counted."""
        return sum(c.session.live for c in self.connections if c.session is not besides)

    async def _admit(self, session: CaptionSession) -> str | None:
        return self.refusal(self.live_streams(besides=session))

    def refusal(self, live_elsewhere: int) -> str | None:
        """The one admission decision (docs/design.md §8): why one more live stream,
        beside `live_elsewhere` others, is refused; None admits it."""
        return self.admission.refusal(live_elsewhere, asyncio.get_running_loop().time())

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    def health(self) -> dict:
        stats = self.runner.stats
        return {
            "status": "draining" if self.draining else "ok",
            "engine": self.engine.name,
            "connections": len(self.connections),
            "viewers": self.rooms.viewer_count(),
            "batches": stats.batches,
            "online_batches": stats.online_batches,
            "online_chunks": stats.online_chunks,
            "mean_online_batch": round(stats.mean_online_batch, 2),
            "online_busy_s": round(stats.online_busy_s, 3),
            "final_busy_s": round(stats.final_busy_s, 3),
            "final_batches": stats.final_batches,
            "finals": stats.finals,
            "final_wait_s": round(stats.final_wait_s, 3),
            "engine_failures": stats.failures,
            # torch threads of the online lane (null: torch's default); while a
            # final pass runs it lends some (docs/workers.md, "Torch threads")
            "online_threads": self.runner.engine_thread.threads,
            "engine_stalls": stats.stalls,
            "live_streams": self.live_streams(),
            "capacity": self.admission.capacity(),
            **self.loop_monitor.health(),
        }

    async def drain(self) -> None:
        """Stop accepting, finalise every open utterance, deliver finals, stop."""
        # Still listening: probes see /readyz 503 and new streams a 503 answer,
        # instead of a refused socket that looks like a crash (docs/operations.md).
        self.draining = True
        handlers = {asyncio.create_task(_until_closed(c)) for c in self.connections}
        for connection in list(self.connections):
            connection.drain()
        if handlers:
            await asyncio.wait(handlers, timeout=self.config.drain_timeout_s)
        await self.stop()

    async def stop(self) -> None:
        await self.loop_monitor.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._runner_task is not None:
            self._runner_task.cancel()
            await asyncio.gather(self._runner_task, return_exceptions=True)
        self.runner.close()
        await self.rooms.close()  # after the last final was written

    async def serve_until_signalled(
            self, before_listen: Callable[[], Awaitable[None]] | None = None) -> None:
        await self.start(before_listen)
        await stop_signal()
        log.info("signal received: draining open streams (up to %gs)",
                 self.config.drain_timeout_s)
        await self.drain()


async def stop_signal() -> None:
    """Return on SIGTERM or SIGINT: the server then drains (uvicorn's lifecycle)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def _refuse(websocket: ServerConnection, code: str, message: str) -> None:
    """An error message, then close 1008 (docs/design.md §4)."""
    try:
        await websocket.send(json.dumps({"error": message, "code": code}))
        await websocket.close(POLICY_VIOLATION, code)
    except ConnectionClosed:
        pass


async def _until_closed(connection: CaptionConnection) -> None:
    await connection.websocket.wait_closed()


def _select_subprotocol(connection: ServerConnection, offered: Sequence[str]) -> str | None:
    # docs/design.md §4: select "binary" when asked, and accept clients that ask for none.
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def _json_response(connection: ServerConnection, body: dict) -> Response:
    response = connection.respond(http.HTTPStatus.OK, json.dumps(body) + "\n")
    response.headers["Content-Type"] = "application/json"
    return response
