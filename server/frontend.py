"""A front-end worker process of `captiond serve --workers N` (docs/workers.md).

Each worker is a whole `CaptionServer` front end on the shared port
(SO_REUSEPORT: the kernel spreads new connections over the workers): HTTP,
static pages, `/health`, WebSockets, and the sessions with their resampling,
VAD and endpointing. What needs the one engine process goes over the link
(server/engine_link.py): model jobs (server/remote.py), the admission
decision, room messages (so every worker's viewers see every speaker), and
whole-server figures for `/health`.

The worker ignores SIGINT (a Ctrl-C reaches the whole process group; the
engine process decides when to drain) and drains when the engine process
says so, or on its own SIGTERM. If the engine process goes away, the worker
fails what waits for the model and exits.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
from dataclasses import replace
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from server.app import CaptionServer
from server.config import ServerConfig
from server.engine_link import Link
from server.logs import LogOptions, setup_logging
from server.remote import EngineFace, RemoteEngine, RemoteRunner
from server.rooms import RoomRegistry
from server.store.linked import LinkedStore
from streaming.session import CaptionSession

log = logging.getLogger("captiond.worker")

WORKER_HEADER = "X-Captiond-Worker"
STATS_INTERVAL_S = 0.25  # how stale the engine process's view of live streams may get


class FrontendServer(CaptionServer):
    """A `CaptionServer` whose engine, runner, admission and rooms hub are in
    the engine process, reached over the link."""

    def __init__(self, config: ServerConfig, face: EngineFace, index: int, link_path: str) -> None:
        self.config = config
        self.face = face
        self.index = index
        self.link_path = link_path
        self.link: Link | None = None
        self._init_front()
        # The store and the Redis bus are the engine process's (server/store/linked.py).
        self.rooms = RoomRegistry(replace(config.rooms, redis=None), store=LinkedStore())
        self._admissions: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._figures: dict[str, Any] = {"engine": face.name, "workers": config.workers}
        self._engine_metrics = b""  # the engine process's /metrics part, as of its last push
        self._drain_requested = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        # The first render imports the engine's text code (FunASR: seconds);
        # do it now, not on the event loop of a live stream.
        self.face.render(("warm", "up"))
        reader, writer = await asyncio.open_unix_connection(self.link_path)
        self.link = Link(reader, writer, self._on_messages)
        self.rooms.store.link = self.link
        self.engine = RemoteEngine(self.face, self.link)
        self.runner = RemoteRunner(self.link)
        self.link.send(("hello", self.index))
        self.loop_monitor.start()  # this process's per-frame cost, for the engine's /health
        self._spawn(self._receive(), self._push_stats())
        await self.listen(reuse_port=True, process_response=self._tag_response)
        self.started = True  # the engine process loaded the models before spawning us
        self.link.send(("ready", self.index))

    def _spawn(self, *coroutines) -> None:
        for coroutine in coroutines:
            task = asyncio.create_task(coroutine)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _tag_response(self, connection: ServerConnection, request: Request,
                      response: Response) -> None:
        # Says which worker took the connection (tests, and ops reading logs).
        response.headers[WORKER_HEADER] = str(self.index)

    async def _receive(self) -> None:
        await self.link.receive_forever()
        if not self.draining:
            log.error("worker %d: the engine process went away; stopping", self.index)
            self.runner.fail_all("the server's engine process stopped; see its log")
            self.rooms.store.fail_all()
            for future in self._admissions.values():
                if not future.done():
                    future.set_result("the server is restarting; try again in a moment")
            self._drain_requested.set()

    async def _push_stats(self) -> None:
        while True:
            self.link.send(("stats", len(self.connections), self.rooms.viewer_count(),
                            self.live_streams(), self.loop_monitor.health()))
            await asyncio.sleep(STATS_INTERVAL_S)

    def _on_messages(self, messages: list[tuple]) -> None:
        for kind, *fields in messages:
            if kind == "result":
                self.runner.on_result(*fields)
            elif kind == "failed":
                self.runner.on_failure(*fields)
            elif kind == "room":
                room, message, text, _ = fields
                self.rooms.deliver(room, message, text)
            elif kind == "stored":
                self.rooms.store.on_reply(*fields)
            elif kind == "admitted":
                request_id, reason = fields
                future = self._admissions.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(reason)
            elif kind == "figures":
                self._figures = fields[0]
            elif kind == "metrics":
                self._engine_metrics = fields[0]
            elif kind == "drain":
                self._drain_requested.set()

    def _publish(self, room: str, message: dict, text: str, utterance_final: bool) -> None:
        # Through the engine process, which sends it to every worker (this one
        # too), so all viewers of a room see one order and the same history.
        self.link.send(("publish", room, message, text, utterance_final))

    async def _admit(self, session: CaptionSession) -> str | None:
        if self.link.closed:
            return "the server is restarting; try again in a moment"
        others = self.live_streams(besides=session)
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._admissions[request_id] = future
        self.link.send(("admit", request_id, others))
        return await future

    def metrics_text(self) -> bytes:
        """This worker's connection figures, and the engine process's last push."""
        return self.metrics.render(self._engine_metrics)

    def health(self) -> dict:
        """Whole-server figures from the engine process, as of its last push."""
        return {**self._figures, "status": "draining" if self.draining else "ok",
                "worker": self.index}

    async def run_until_drained(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._drain_requested.set)
        await self._drain_requested.wait()
        await self.drain()

    async def stop(self) -> None:
        await self.loop_monitor.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.link.close()


def worker_main(config: ServerConfig, face: EngineFace, index: int, link_path: str,
                log_options: LogOptions) -> None:
    """Entry point of a worker process (multiprocessing "spawn")."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(log_options, tag=f"w{index}")
    from server.cli import run_loop

    run_loop(FrontendServer(config, face, index, link_path).run_until_drained())
