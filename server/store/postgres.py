"""The transcript store for several captiond processes: PostgreSQL via psycopg 3.

The same statements as SQLite (server/store/sql.py). psycopg's async
connection never blocks the event loop; one connection per process, used one
statement at a time. The room-row lock taken by the id upsert orders appends
from different processes (docs/transcripts.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.store import sql
from server.store.base import Retention, StoredFinal, StreamInfo, TranscriptStore


def _pg(statement: str) -> str:
    return statement.replace("?", "%s")


class PostgresStore(TranscriptStore):
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._db = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        import psycopg  # only deployments that use PostgreSQL need it

        self._db = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        async with self._lock, self._db.transaction():
            # Two processes starting together must not both create the tables.
            await self._db.execute("SELECT pg_advisory_xact_lock(4242001)")
            for statement in sql.SCHEMA:
                await self._db.execute(statement)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def append(self, room: str, stream: StreamInfo, message: dict[str, Any],
                     recorded_at: float) -> int:
        async with self._lock, self._db.transaction():
            cursor = await self._db.execute(_pg(sql.NEXT_ID), (room,))
            (final_id,) = await cursor.fetchone()
            await self._db.execute(_pg(sql.ADD_STREAM), sql.stream_row(room, stream))
            await self._db.execute(_pg(sql.ADD_FINAL), sql.final_row(
                room, final_id, stream, {**message, "id": final_id}, recorded_at))
        return int(final_id)

    async def finals(self, room: str, after: int = 0, *, stream: str | None = None,
                     limit: int | None = None, newest: int | None = None) -> list[StoredFinal]:
        query, params = sql.select_finals(room, after, stream, limit, newest)
        async with self._lock:
            rows = await (await self._db.execute(_pg(query), params)).fetchall()
        finals = [sql.to_final(room, row) for row in rows]
        return finals[::-1] if newest is not None else finals

    async def last_id(self, room: str) -> int:
        async with self._lock:
            row = await (await self._db.execute(_pg(sql.LAST_ID), (room,))).fetchone()
        return int(row[0]) if row else 0

    async def streams(self, room: str) -> list[StreamInfo]:
        async with self._lock:
            rows = await (await self._db.execute(_pg(sql.STREAMS), (room,))).fetchall()
        return [sql.to_stream(row) for row in rows]

    async def prune(self, retention: Retention, now: float) -> int:
        deleted = 0
        async with self._lock, self._db.transaction():
            for statement, params in sql.prune_statements(retention, now):
                deleted += (await self._db.execute(_pg(statement), params)).rowcount
        return deleted
