"""A transcript store in this process's memory: tests, and `--store memory`
for deployments that want resume and export but nothing on disk."""

from __future__ import annotations

from typing import Any

from server.store.base import (
    Retention,
    StoredFinal,
    StreamInfo,
    TranscriptStore,
    final_fields,
)


class MemoryStore(TranscriptStore):
    def __init__(self) -> None:
        self._finals: dict[str, list[StoredFinal]] = {}
        self._last_id: dict[str, int] = {}

    async def append(self, room: str, stream: StreamInfo, message: dict[str, Any],
                     recorded_at: float) -> int:
        final_id = self._last_id.get(room, 0) + 1
        self._last_id[room] = final_id
        text, start_ms, end_ms, sentences = final_fields(message)
        stored = StoredFinal(room, final_id, stream, text, start_ms, end_ms, sentences,
                             {**message, "id": final_id}, recorded_at)
        self._finals.setdefault(room, []).append(stored)
        return final_id

    async def finals(self, room: str, after: int = 0, *, stream: str | None = None,
                     limit: int | None = None, newest: int | None = None) -> list[StoredFinal]:
        found = [f for f in self._finals.get(room, ())
                 if f.id > after and (stream is None or f.stream.key == stream)]
        if newest is not None:
            return found[-newest:] if newest else []
        return found[:limit] if limit is not None else found

    async def last_id(self, room: str) -> int:
        return self._last_id.get(room, 0)

    async def streams(self, room: str) -> list[StreamInfo]:
        seen: dict[str, StreamInfo] = {}
        for final in self._finals.get(room, ()):
            seen.setdefault(final.stream.key, final.stream)
        return sorted(seen.values(), key=lambda s: (s.started_at, s.key))

    async def prune(self, retention: Retention, now: float) -> int:
        deleted = 0
        for room, finals in self._finals.items():
            kept, rules = finals, retention.for_room(room)
            if rules.max_age_days is not None:
                oldest = now - rules.max_age_days * 86400
                kept = [f for f in kept if f.recorded_at >= oldest]
            if rules.max_finals_per_room is not None:
                kept = [f for f in kept
                        if f.id > self._last_id[room] - rules.max_finals_per_room]
            deleted += len(finals) - len(kept)
            self._finals[room] = kept
        return deleted
