"""The default transcript store: one SQLite file in WAL mode.

One thread owns the connection and runs every statement in order, so the
event loop never waits on the disk and writes never contend within this
process. WAL with synchronous=NORMAL: a committed final survives the
process being killed (SIGKILL) — it is in the WAL, which the OS holds; only
a power loss could take the last commits (docs/transcripts.md).

`fail_next_writes(n)` is a fault-injection hook for tests, off unless called:
the next n appends fail inside their transaction, as a full disk would
(docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from server.store import sql
from server.store.base import Retention, StoredFinal, StreamInfo, TranscriptStore

T = TypeVar("T")


class SQLiteStore(TranscriptStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="captiond-store")
        self._db: sqlite3.Connection | None = None
        self._failing_writes = 0  # the fault hook's count; the store thread takes from it
        self.injected_failures = 0  # how many writes the hook failed so far
        self._failing_lock = threading.Lock()

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def open(self) -> None:
        await self._run(self._connect)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit (isolation_level=None): transactions are the explicit BEGINs below
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")  # other processes on the same file
        for statement in sql.SCHEMA:
            self._db.execute(statement)

    def fail_next_writes(self, count: int) -> None:
        """Test-only: the next `count` appends raise OperationalError ("database
        or disk is full") after taking the write lock; 0 ends the fault."""
        with self._failing_lock:
            self._failing_writes = count

    def _injected_fault(self) -> None:
        with self._failing_lock:
            if self._failing_writes <= 0:
                return
            self._failing_writes -= 1
            self.injected_failures += 1
        raise sqlite3.OperationalError("database or disk is full (injected fault)")

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    async def append(self, room: str, stream: StreamInfo, message: dict[str, Any],
                     recorded_at: float) -> int:
        return await self._run(self._append, room, stream, message, recorded_at)

    def _append(self, room: str, stream: StreamInfo, message: dict[str, Any],
                recorded_at: float) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # takes the write lock before reading last_id
        try:
            (final_id,) = db.execute(sql.NEXT_ID, (room,)).fetchone()
            self._injected_fault()
            db.execute(sql.ADD_STREAM, sql.stream_row(room, stream))
            db.execute(sql.ADD_FINAL, sql.final_row(room, final_id, stream,
                                                    {**message, "id": final_id}, recorded_at))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return final_id

    async def finals(self, room: str, after: int = 0, *, stream: str | None = None,
                     limit: int | None = None, newest: int | None = None) -> list[StoredFinal]:
        query, params = sql.select_finals(room, after, stream, limit, newest)
        rows = await self._run(lambda: self._db.execute(query, params).fetchall())
        finals = [sql.to_final(room, row) for row in rows]
        return finals[::-1] if newest is not None else finals

    async def last_id(self, room: str) -> int:
        row = await self._run(lambda: self._db.execute(sql.LAST_ID, (room,)).fetchone())
        return int(row[0]) if row else 0

    async def streams(self, room: str) -> list[StreamInfo]:
        rows = await self._run(lambda: self._db.execute(sql.STREAMS, (room,)).fetchall())
        return [sql.to_stream(row) for row in rows]

    async def prune(self, retention: Retention, now: float) -> int:
        return await self._run(self._prune, retention, now)

    def _prune(self, retention: Retention, now: float) -> int:
        db = self._db
        deleted = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement, params in sql.prune_statements(retention, now):
                deleted += db.execute(statement, params).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return deleted
