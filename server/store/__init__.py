"""Transcript stores (docs/transcripts.md): `open_store(spec)` picks the backend.

`spec` is `memory`, a PostgreSQL URL (`postgresql://…`), or a SQLite file path
(`sqlite:///path` or a plain path). The default, for `captiond serve`, is a
SQLite file under the user's data directory.
"""

from __future__ import annotations

from pathlib import Path

from server.store.base import FinalNotStored, Retention, StoredFinal, StreamInfo, TranscriptStore

__all__ = ["FinalNotStored", "Retention", "StoredFinal", "StreamInfo", "TranscriptStore",
           "default_store_path", "open_store"]


def default_store_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("captiond")) / "transcripts.sqlite3"


def open_store(spec: str) -> TranscriptStore:
    """A store for `spec` (not yet opened: await its `open()`)."""
    if spec == "memory":
        from server.store.memory import MemoryStore

        return MemoryStore()
    if spec.startswith(("postgresql://", "postgres://")):
        from server.store.postgres import PostgresStore

        return PostgresStore(spec)
    from server.store.sqlite import SQLiteStore

    return SQLiteStore(spec.removeprefix("sqlite://"))
