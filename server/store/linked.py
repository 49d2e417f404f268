"""The transcript store of `captiond serve --workers N` (docs/workers.md):
the engine process holds the one store; each front-end worker reaches it
over its link, so every worker's finals share one id sequence per room.

`LinkedStore` is the worker's side: each call is a ("store", call id, method,
args) message answered by ("stored", call id, ok, value). `serve_store_call`
is the engine process's side.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from server.store.base import Retention, StoredFinal, StreamInfo, TranscriptStore

log = logging.getLogger("captiond.store")

CALLS = frozenset({"append", "finals", "last_id", "streams"})  # what a worker may ask


class StoreUnavailable(RuntimeError):
    """The engine process's store failed the call, or the link is gone."""


class LinkedStore(TranscriptStore):
    def __init__(self) -> None:
        self.link = None  # set by the worker once its link is open
        self._calls: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.link is None or self.link.closed:
            raise StoreUnavailable("the engine process is not reachable")
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        self.link.send(("store", call_id, method, args, kwargs))
        return await future

    def on_reply(self, call_id: int, ok: bool, value: Any) -> None:
        future = self._calls.pop(call_id, None)
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(StoreUnavailable(value))

    def fail_all(self) -> None:
        for future in self._calls.values():
            if not future.done():
                future.set_exception(StoreUnavailable("the engine process went away"))
        self._calls.clear()

    async def append(self, room: str, stream: StreamInfo, message: dict[str, Any],
                     recorded_at: float) -> int:
        return await self._call("append", room, stream, message, recorded_at)

    async def finals(self, room: str, after: int = 0, **options: Any) -> list[StoredFinal]:
        return await self._call("finals", room, after, **options)

    async def last_id(self, room: str) -> int:
        return await self._call("last_id", room)

    async def streams(self, room: str) -> list[StreamInfo]:
        return await self._call("streams", room)

    async def prune(self, retention: Retention, now: float) -> int:
        return 0  # the engine process applies retention to its store


async def serve_store_call(store: TranscriptStore, link, call_id: int, method: str,
                           args: tuple, kwargs: dict) -> None:
    """Run one worker's store call on the engine process's store; answer it."""
    if method not in CALLS:
        link.send(("stored", call_id, False, f"unknown store call {method!r}"))
        return
    try:
        value = await getattr(store, method)(*args, **kwargs)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        log.warning("store call %s from a worker failed: %s", method, why)  # it may retry
        link.send(("stored", call_id, False, why))
        return
    link.send(("stored", call_id, True, value))
