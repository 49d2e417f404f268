"""Rooms: fan-out of speakers' captions to read-only viewers (docs/design.md §4).

A speaker joins by naming a `room` in its config; viewers connect to
`/rooms/<room>`. Each viewer gets the room's recent finals on join (marked
`"history": true`) and then every message of every speaker. A slow viewer
never slows a speaker: each has a bounded queue and its own writer task, and
one that falls too far behind is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server import protocol
from streaming.errors import POLICY_VIOLATION

log = logging.getLogger("captiond.rooms")

HISTORY_FINALS = 50
VIEWER_QUEUE = 1000  # messages; ~10 min of partials for one speaker


@dataclass
class Room:
    name: str
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_FINALS))
    viewers: set[asyncio.Queue[str | None]] = field(default_factory=set)


class RoomRegistry:
    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}

    def _room(self, name: str) -> Room:
        if name not in self._rooms:
            self._rooms[name] = Room(name)
        return self._rooms[name]

    def publish(self, name: str, message: dict[str, Any], text: str, utterance_final: bool) -> None:
        """Fan a speaker's message (already encoded as `text`) out to the room's
        viewers; keep finals for viewers who join later."""
        room = self._room(name)
        if utterance_final:
            room.history.append(message)
        for queue in list(room.viewers):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                room.viewers.discard(queue)
                queue.put_nowait(None)  # tells the writer to close: too slow
                log.info("room %s: dropped a viewer that fell behind", name)

    async def serve_viewer(self, name: str, websocket: ServerConnection) -> None:
        room = self._room(name)
        # +1 leaves room for the close marker when the queue is full
        queue: asyncio.Queue[str | None] = asyncio.Queue(VIEWER_QUEUE + 1)
        for message in room.history:
            queue.put_nowait(protocol.dumps({**message, "history": True}))
        room.viewers.add(queue)
        tasks = {asyncio.create_task(_write(queue, websocket)),
                 asyncio.create_task(_ignore_input(websocket))}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.viewers.discard(queue)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def viewer_count(self) -> int:
        return sum(len(room.viewers) for room in self._rooms.values())


async def _write(queue: asyncio.Queue[str | None], websocket: ServerConnection) -> None:
    try:
        while (text := await queue.get()) is not None:
            await websocket.send(text)
        await websocket.close(POLICY_VIOLATION, "viewer too slow")
    except ConnectionClosed:
        pass


async def _ignore_input(websocket: ServerConnection) -> None:
    """Viewers are read-only; reading still notices when they leave."""
    try:
        async for _ in websocket:
            pass
    except ConnectionClosed:
        pass
