"""One room viewer: its bounded feed, catch-up from the store, then live
messages, in room-id order without gaps or repeats (docs/transcripts.md).

Why a feed and not a plain queue: a speaker's partials arrive several times
a second and each one supersedes the last, so a viewer that is behind only
needs the latest partial per stream (their `text` deltas are joined, since
FunASR clients append them). Finals are never dropped; a viewer whose unsent
finals pass the limit is closed with a reason that says how to resume, and
nobody else waits for it: publishing only appends to feeds, and each viewer
has its own writer task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server import protocol
from server.store import TranscriptStore
from streaming.errors import INTERNAL_ERROR, POLICY_VIOLATION

log = logging.getLogger("captiond.rooms")

HISTORY_FINALS = 50  # what a viewer joining without `after` is shown first
CATCH_UP_PAGE = 500  # finals read from the store at a time


@dataclass
class _Entry:
    message: dict[str, Any]
    text: str | None  # the publisher's encoding, None once merged
    coalescable: bool


def is_coalescable(message: dict[str, Any]) -> bool:
    """A partial that the next partial of its stream supersedes."""
    return (message.get("mode", "").endswith("online") and not message.get("final")
            and not message.get("is_final"))


def stream_of(message: dict[str, Any]) -> Any:
    return message.get("stream") or (message.get("speaker"), message.get("wav_name"))


class ViewerFeed:
    """What one viewer has yet to be sent: finals in order, partials coalesced."""

    def __init__(self, max_finals: int) -> None:
        self.max_finals = max_finals
        self._entries: deque[_Entry] = deque()
        self._tails: dict[Any, _Entry] = {}  # stream -> its last unsent entry
        self._pending_finals = 0
        self._ready = asyncio.Event()
        self.overflowed = asyncio.Event()
        self.last_sent_id = 0  # the `after` this viewer can resume from

    @property
    def pending_finals(self) -> int:
        return self._pending_finals

    def put(self, message: dict[str, Any], text: str | None) -> None:
        if self.overflowed.is_set():
            return
        stream = stream_of(message)
        tail = self._tails.get(stream)
        coalescable = is_coalescable(message)
        if coalescable and tail is not None and tail.coalescable \
                and tail.message.get("segment") == message.get("segment"):
            tail.message = {**message, "text": tail.message.get("text", "") + message["text"]}
            tail.text = None
            return
        entry = _Entry(message, text, coalescable)
        self._entries.append(entry)
        self._tails[stream] = entry
        if not coalescable:
            self._pending_finals += 1
            if self._pending_finals > self.max_finals:
                self.overflowed.set()
        self._ready.set()

    async def get(self) -> tuple[dict[str, Any], str]:
        """The next message to send, and its wire text."""
        while not self._entries:
            self._ready.clear()
            await self._ready.wait()
        entry = self._entries.popleft()
        stream = stream_of(entry.message)
        if self._tails.get(stream) is entry:
            del self._tails[stream]
        if not entry.coalescable:
            self._pending_finals -= 1
        return entry.message, entry.text or protocol.dumps(entry.message)


class ViewerWriter:
    """Sends a viewer its catch-up, then its feed, in room-id order.

    Live finals can overtake each other (two processes appending to one
    room); a final whose id skips ahead is preceded by the missing ones, read
    from the store (which has them: ids are given in commit order), and one
    that arrives after its id was sent is skipped.
    """

    def __init__(self, room: str, feed: ViewerFeed, websocket: ServerConnection,
                 store: TranscriptStore) -> None:
        self.room = room
        self.feed = feed
        self.websocket = websocket
        self.store = store

    async def run(self, after: int | None) -> None:
        try:
            await self._catch_up(after)
            while True:
                await self._send_live(*await self.feed.get())
        except ConnectionClosed:
            pass
        except Exception:  # the store failed: say so, and let the viewer retry
            log.exception("room %s: a viewer's catch-up failed", self.room)
            await self.websocket.close(INTERNAL_ERROR, "transcript store unavailable; retry")

    async def _catch_up(self, after: int | None) -> None:
        if after is not None and after > await self.store.last_id(self.room):
            after = None  # an id from before the store was emptied (a memory store restarted)
        if after is None:  # a first join: recent history, marked as such
            for final in await self.store.finals(self.room, newest=HISTORY_FINALS):
                await self._send_final(final.message, history=True)
            return
        self.feed.last_sent_id = after
        await self._fill_gap(None, history=True)

    async def _fill_gap(self, before: int | None, history: bool) -> None:
        """Send the stored finals after the last one sent (and before `before`)."""
        while before is None or self.feed.last_sent_id + 1 < before:
            limit = CATCH_UP_PAGE if before is None else \
                min(CATCH_UP_PAGE, before - self.feed.last_sent_id - 1)
            page = await self.store.finals(self.room, self.feed.last_sent_id, limit=limit)
            for final in page:
                await self._send_final(final.message, history)
            if len(page) < limit:
                return

    async def _send_live(self, message: dict[str, Any], text: str) -> None:
        final_id = message.get("id")
        if final_id is None:  # partials
            await self.websocket.send(text)
            return
        if final_id <= self.feed.last_sent_id:
            return  # already sent in the catch-up
        # Finals overtaken on their way here are live, not history: an overlay
        # shows them like any other (it hides history).
        await self._fill_gap(final_id, history=False)
        await self._send(final_id, text)

    async def _send_final(self, message: dict[str, Any], history: bool) -> None:
        final_id = message.get("id", 0)
        if final_id <= self.feed.last_sent_id:
            return
        await self._send(final_id, protocol.dumps({**message, "history": True} if history
                                                  else message))

    async def _send(self, final_id: int, text: str) -> None:
        # Counted as sent before the await: send() queues the frame, then waits
        # for the socket to drain, and a too-slow viewer is cancelled there —
        # with this frame still on its way to it.
        self.feed.last_sent_id = final_id
        await self.websocket.send(text)


async def close_too_slow(feed: ViewerFeed, websocket: ServerConnection) -> None:
    reason = (f"viewer too slow: over {feed.max_finals} finals behind; "
              f"reconnect with ?after={feed.last_sent_id}")
    try:
        await websocket.close(POLICY_VIOLATION, reason)
    except ConnectionClosed:
        pass
