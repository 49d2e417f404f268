"""`captiond serve` from start to stop, with the port answering from the first second.

Loading the models takes seconds to minutes (a download, FunASR's imports, a
GPU's warm-up), then the capacity is measured. Until the caption server is
ready a `StartupProbe` holds the port: `/healthz` says the process is alive,
`/readyz` and everything else answer 503, so an orchestrator waits instead of
seeing a refused connection it would take for a crash (docs/operations.md).
"""

from __future__ import annotations

import http
import logging
import sys
from dataclasses import replace

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from server.app import CaptionServer
from server.config import ServerConfig
from server.engine_thread import EngineThread
from server.ops_routes import text_response

log = logging.getLogger("captiond.server")

STARTING = "starting: loading models\n"


class StartupProbe:
    """Answers probes on the port while the models load; never upgrades."""

    def __init__(self) -> None:
        self._server: Server | None = None

    async def listen(self, host: str, port: int) -> int:
        self._server = await serve(_never_upgrade, host, port, process_request=self._answer)
        return self._server.sockets[0].getsockname()[1]

    def _answer(self, connection: ServerConnection, request: Request) -> Response:
        if request.path.split("?", 1)[0] == "/healthz":
            return text_response(http.HTTPStatus.OK, "ok\n")
        return text_response(http.HTTPStatus.SERVICE_UNAVAILABLE, STARTING)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _never_upgrade(websocket: ServerConnection) -> None:
    await websocket.close()  # unreachable: every request is answered in _answer


async def serve_captions(config: ServerConfig, engine_thread: EngineThread,
                         pick_workers: bool) -> int:
    """Load, serve until SIGTERM/SIGINT, drain; the process's exit status."""
    from server.engines import build_engine
    from server.final_process import FinalPassError
    from streaming.engines.funasr_adapter import FunASRMismatch
    from streaming.errors import ModelNotFoundError

    probe = StartupProbe()
    config = replace(config, port=await probe.listen(config.host, config.port))
    log.info("captiond starting on ws://%s:%d: loading models (/readyz: 503 until ready)",
             config.host, config.port)
    try:
        engine = await engine_thread.run(build_engine, config.models, config.threads)
    except (ModelNotFoundError, FunASRMismatch, FinalPassError) as exc:
        await probe.close()
        engine_thread.close()
        print(f"captiond: {exc}", file=sys.stderr)
        return 2
    if pick_workers:
        from server.model_loading import pick_device
        from server.workers import default_workers

        config = replace(config, workers=default_workers(pick_device(config.models.device)))
    try:
        if config.workers > 1:
            await probe.close()  # the workers bind the port themselves
            return await _serve_workers(config, engine, engine_thread)
        server = CaptionServer(config, engine, engine_thread)
        # The capacity is measured while the probe still answers; then it hands over.
        await server.serve_until_signalled(before_listen=probe.close)
        return 0
    finally:
        if hasattr(engine, "close"):
            engine.close()  # the final-pass process, after the drain's last final


async def _serve_workers(config: ServerConfig, engine, engine_thread: EngineThread) -> int:
    from server.workers import MultiWorkerServer, WorkerStartError

    try:
        await MultiWorkerServer(config, engine, engine_thread).serve_until_signalled()
    except WorkerStartError as exc:
        print(f"captiond: {exc}", file=sys.stderr)
        return 1
    return 0
