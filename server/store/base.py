"""What a transcript store is: the interface every backend meets (docs/transcripts.md).

A room's transcript is its finals, each with an id that increases by one per
room. The id is given when the final is written, and a final is written
before anyone is sent it (docs/design.md §8), so a viewer that saw id N can
always fetch everything after N from the store.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StreamInfo:
    """One speaker's stream within a room: the unit of per-stream export."""

    key: str  # short random hex, unique per stream
    speaker: str | None
    wav_name: str
    started_at: float  # wall clock (Unix seconds) of the stream's first message


@dataclass(frozen=True)
class StoredFinal:
    room: str
    id: int  # 1, 2, 3 … per room
    stream: StreamInfo
    text: str
    start_ms: int  # from the stream's start
    end_ms: int
    sentences: list[dict[str, Any]]  # the wire `stamp_sents`, stream-relative times
    message: dict[str, Any]  # the wire message as sent, `id` included
    recorded_at: float  # wall clock

    @property
    def speaker(self) -> str | None:
        return self.stream.speaker


class FinalNotStored(RuntimeError):
    """The store kept failing to write a final: it must not be sent to anyone
    (docs/reliability.md, "When the store fails")."""


@dataclass(frozen=True)
class Retention:
    """How long transcripts are kept; None: without limit. `rooms` holds the
    rooms with their own rules (complete: a room's rules replace these)."""

    max_age_days: float | None = None  # finals recorded longer ago are deleted
    max_finals_per_room: int | None = None  # only a room's newest finals are kept
    # hash=False: the config stays hashable (a dict is not; equality still compares it)
    rooms: Mapping[str, Retention] = field(default_factory=dict, hash=False)

    @property
    def limited(self) -> bool:
        return self.max_age_days is not None or self.max_finals_per_room is not None

    def for_room(self, room: str) -> Retention:
        return self.rooms.get(room, self)

    @property
    def deletes_anything(self) -> bool:
        return self.limited or any(rules.limited for rules in self.rooms.values())


class TranscriptStore(ABC):
    """Backends: memory (tests, `--store memory`), SQLite (default), PostgreSQL."""

    async def open(self) -> None:  # noqa: B027 — a hook: backends without setup skip it
        """Connect and create the schema; called once before anything else."""

    async def close(self) -> None:  # noqa: B027
        """Flush and disconnect; called once at shutdown."""

    @abstractmethod
    async def append(self, room: str, stream: StreamInfo, message: dict[str, Any],
                     recorded_at: float) -> int:
        """Write one final (a wire message) and return its room id. Returns only
        once the final is durable, so the caller may then send it."""

    @abstractmethod
    async def finals(self, room: str, after: int = 0, *, stream: str | None = None,
                     limit: int | None = None, newest: int | None = None) -> list[StoredFinal]:
        """A room's finals with id > `after`, oldest first: the first `limit` of
        them, or (with `newest`) only the last `newest`; `stream`: one stream's."""

    @abstractmethod
    async def last_id(self, room: str) -> int:
        """The id of the room's newest final ever written (0: none); pruning
        does not lower it."""

    @abstractmethod
    async def streams(self, room: str) -> list[StreamInfo]:
        """The room's streams that have finals, oldest first."""

    @abstractmethod
    async def prune(self, retention: Retention, now: float) -> int:
        """Apply the retention rules; return how many finals were deleted."""


def final_fields(message: dict[str, Any]) -> tuple[str, int, int, list[dict[str, Any]]]:
    """The columns a store keeps beside the whole message."""
    return (message.get("text", ""), int(message.get("start", 0)), int(message.get("end", 0)),
            list(message.get("stamp_sents", [])))


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
