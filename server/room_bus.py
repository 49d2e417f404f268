"""Rooms across captiond processes: Redis pub/sub (`--redis URL`, docs/transcripts.md).

Without Redis a room lives in one process. With it, every process publishes
its speakers' messages to the room's channel and delivers what the channel
carries to its own viewers, its own messages included, so a speaker on one
process reaches viewers on any other. Finals are in the shared store before
they are published (PostgreSQL, or one SQLite file on one machine), so
catch-up works from any process; a viewer puts finals that overtake each
other back in id order from the store (server/viewer.py).

Publishing never blocks a speaker: messages go into a bounded outbox that
one task sends in order; if Redis is down the outbox fills and the oldest
messages are dropped, logged — finals stay in the store, and viewers get
them by resuming with `after`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable

log = logging.getLogger("captiond.bus")

CHANNEL_PREFIX = "captiond:room:"
OUTBOX = 10_000  # messages waiting for Redis
RETRY_S = 1.0


class RedisRoomBus:
    def __init__(self, url: str, deliver: Callable[[str, dict, str], None]) -> None:
        self.url = url
        self.deliver = deliver  # (room, message, its text) to this process's viewers
        self._outbox: deque[tuple[str, str]] = deque(maxlen=OUTBOX)
        self._pending = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._subscribed = asyncio.Event()
        self._redis = None

    async def start(self) -> None:
        import redis.asyncio as redis  # only deployments with --redis need it

        self._redis = redis.from_url(self.url)
        await self._redis.ping()  # a wrong URL fails at startup, not at the first final
        self._tasks = [asyncio.create_task(self._receive(), name="captiond-bus-in"),
                       asyncio.create_task(self._send(), name="captiond-bus-out")]
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    def publish(self, room: str, text: str) -> None:
        if len(self._outbox) == OUTBOX:
            log.warning("room bus: Redis is not keeping up; dropped a message of %s", room)
        self._outbox.append((room, text))
        self._pending.set()

    async def _send(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            while self._outbox:
                room, text = self._outbox[0]
                try:
                    await self._redis.publish(CHANNEL_PREFIX + room, text)
                except Exception as exc:  # Redis away: keep the message, try again
                    log.warning("room bus: cannot publish to Redis (%s); retrying", exc)
                    await asyncio.sleep(RETRY_S)
                    continue
                self._outbox.popleft()

    async def _receive(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                    self._subscribed.set()
                    async for item in pubsub.listen():
                        if item["type"] == "pmessage":
                            self._on_item(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("room bus: lost the Redis subscription (%s); resubscribing", exc)
                await asyncio.sleep(RETRY_S)

    def _on_item(self, item: dict) -> None:
        room = item["channel"].decode()[len(CHANNEL_PREFIX):]
        text = item["data"].decode()
        self.deliver(room, json.loads(text), text)
