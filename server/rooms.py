"""Rooms: fan-out of speakers' captions to read-only viewers (docs/design.md §4,
docs/transcripts.md).

A speaker joins by naming a `room` in its config; viewers connect to
`/rooms/<room>`, optionally with `?after=<id>`. Each final is written to the
transcript store first, which gives it the room's next `id`, and only then
sent to the speaker and published; a store that keeps failing ends the
stream instead (1011), as nothing sent may be missing from the store. A
viewer gets the room's recent finals on join (marked `"history": true`), or
with `after` exactly the finals after that id, then every live message
(server/viewer.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server.config import RoomOptions
from server.room_bus import RedisRoomBus
from server.store import FinalNotStored, StreamInfo, TranscriptStore, open_store
from server.viewer import ViewerFeed, ViewerWriter, close_too_slow

log = logging.getLogger("captiond.rooms")

PRUNE_INTERVAL_S = 3600.0
STORE_RETRY_FIRST_PAUSE_S = 0.05  # then doubled per failed write, up to the next
STORE_RETRY_MAX_PAUSE_S = 1.0
STORE_UNREADY_S = 30.0  # /readyz says 503 this long after a failed write


class RoomRegistry:
    def __init__(self, options: RoomOptions | None = None,
                 store: TranscriptStore | None = None) -> None:
        self.options = options or RoomOptions()
        self.store = store or open_store(self.options.store)
        self._viewers: dict[str, set[ViewerFeed]] = {}
        self._pruner: asyncio.Task | None = None
        self._write_failure: tuple[float, str] | None = None  # (when, why): the last failed write
        self.bus = RedisRoomBus(self.options.redis, self.deliver) if self.options.redis else None

    async def open(self) -> None:
        await self.store.open()
        if self.bus is not None:
            await self.bus.start()
        if self.options.retention.deletes_anything:
            self._pruner = asyncio.create_task(self._keep_pruned(), name="captiond-prune")

    async def close(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)
        if self.bus is not None:
            await self.bus.stop()
        await self.store.close()

    async def _keep_pruned(self) -> None:
        while True:
            deleted = await self.store.prune(self.options.retention, time.time())
            if deleted:
                log.info("retention: deleted %d old finals", deleted)
            await asyncio.sleep(PRUNE_INTERVAL_S)

    async def record(self, room: str, stream: StreamInfo, message: dict[str, Any]
                     ) -> dict[str, Any]:
        """Write a final; return it with its room `id`, ready to send. A failed
        write is tried again after a pause that doubles, for up to
        `store_retry_s`; then FinalNotStored: the final must not be sent, as
        nothing sent may be missing from the store (docs/reliability.md)."""
        started = time.monotonic()
        give_up_at = started + self.options.store_retry_s
        pause = STORE_RETRY_FIRST_PAUSE_S
        for attempt in itertools.count(1):
            try:
                final_id = await self.store.append(room, stream, message, time.time())
                break
            except Exception as error:
                why = _one_line(error)
                self._write_failure = (time.monotonic(), why)
                if time.monotonic() + pause > give_up_at:
                    log.error("room %s: could not store a final (%d tries in %.1f s: %s); "
                              "closing its stream", room, attempt, time.monotonic() - started, why)
                    raise FinalNotStored(why) from None
            await asyncio.sleep(pause)
            pause = min(2 * pause, STORE_RETRY_MAX_PAUSE_S)
        if attempt > 1:
            log.warning("room %s: stored a final at try %d (before: %s)", room, attempt, why)
        self._write_failure = None
        return {**message, "id": final_id}

    def store_readiness(self) -> str | None:
        """A readiness check (/readyz): why not, while the store fails writes.
        Without writes nobody would learn it recovered, so a failure counts
        for STORE_UNREADY_S, then traffic may try again."""
        if self._write_failure is None:
            return None
        failed_at, why = self._write_failure
        if time.monotonic() - failed_at > STORE_UNREADY_S:
            return None
        return f"transcript store: writes failing ({why})"

    def publish(self, name: str, message: dict[str, Any], text: str,
                utterance_final: bool = False) -> None:
        """Fan a speaker's message (already encoded as `text`) out to the room's
        viewers (through Redis: on every process); finals must be recorded first."""
        if self.bus is not None:
            self.bus.publish(name, text)
        else:
            self.deliver(name, message, text)

    def deliver(self, name: str, message: dict[str, Any], text: str) -> None:
        """A room's message to this process's viewers."""
        for feed in self._viewers.get(name, ()):
            feed.put(message, text)

    async def serve_viewer(self, name: str, websocket: ServerConnection,
                           after: int | None = None) -> None:
        feed = ViewerFeed(self.options.viewer_max_finals)
        # Subscribed before the catch-up is read: a final published meanwhile
        # is in the feed, in the store, or both (the writer skips repeats).
        self._viewers.setdefault(name, set()).add(feed)
        writer = ViewerWriter(name, feed, websocket, self.store)
        tasks = {asyncio.create_task(writer.run(after)),
                 asyncio.create_task(_ignore_input(websocket)),
                 asyncio.create_task(feed.overflowed.wait())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._viewers[name].discard(feed)
            if not self._viewers[name]:
                del self._viewers[name]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if feed.overflowed.is_set():
            log.info("room %s: closed a viewer that fell behind (sent up to id %d)",
                     name, feed.last_sent_id)
            await close_too_slow(feed, websocket)

    def room_count(self) -> int:
        """Rooms someone is watching (rooms without viewers only keep history)."""
        return sum(1 for feeds in self._viewers.values() if feeds)

    def viewer_count(self) -> int:
        return sum(len(feeds) for feeds in self._viewers.values())

    def backlogs(self, name: str) -> list[int]:
        """Unsent finals per viewer of a room (tests, and /health one day)."""
        return [feed.pending_finals for feed in self._viewers.get(name, ())]


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


async def _ignore_input(websocket: ServerConnection) -> None:
    """Viewers are read-only; reading still notices when they leave."""
    try:
        async for _ in websocket:
            pass
    except ConnectionClosed:
        pass
