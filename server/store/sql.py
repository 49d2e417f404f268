"""The SQL both database backends run (SQLite and PostgreSQL accept the same
statements; only the placeholder differs: `?` here, `%s` for psycopg).

Every value goes in as a parameter, never into the text. A room's last id
lives in `rooms`, so ids keep increasing after old finals are pruned, and the
upsert that takes the next id also locks the room's row: two processes
appending to one room get consecutive ids, and the second commits after the
first (docs/transcripts.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from server.store.base import Retention, StoredFinal, StreamInfo, dump_json, final_fields

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rooms ("
    " name TEXT PRIMARY KEY, last_id BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS streams ("
    " room TEXT NOT NULL, key TEXT NOT NULL, speaker TEXT, wav_name TEXT NOT NULL,"
    " started_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (room, key))",
    "CREATE TABLE IF NOT EXISTS finals ("
    " room TEXT NOT NULL, id BIGINT NOT NULL, stream TEXT NOT NULL, text TEXT NOT NULL,"
    " start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL, sentences TEXT NOT NULL,"
    " message TEXT NOT NULL, recorded_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (room, id))",
    "CREATE INDEX IF NOT EXISTS finals_by_age ON finals (recorded_at)",
)

NEXT_ID = ("INSERT INTO rooms (name, last_id) VALUES (?, 1) "
           "ON CONFLICT (name) DO UPDATE SET last_id = rooms.last_id + 1 RETURNING last_id")
ADD_STREAM = ("INSERT INTO streams (room, key, speaker, wav_name, started_at) "
              "VALUES (?, ?, ?, ?, ?) ON CONFLICT (room, key) DO NOTHING")
ADD_FINAL = ("INSERT INTO finals (room, id, stream, text, start_ms, end_ms, sentences, message,"
             " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")

_SELECT = ("SELECT f.id, f.text, f.start_ms, f.end_ms, f.sentences, f.message, f.recorded_at,"
           " s.key, s.speaker, s.wav_name, s.started_at"
           " FROM finals f JOIN streams s ON s.room = f.room AND s.key = f.stream"
           " WHERE f.room = ? AND f.id > ?")
LAST_ID = "SELECT last_id FROM rooms WHERE name = ?"
STREAMS = ("SELECT key, speaker, wav_name, started_at FROM streams WHERE room = ?"
           " ORDER BY started_at, key")
PRUNE_AGE = "DELETE FROM finals WHERE recorded_at < ?"
PRUNE_PER_ROOM = ("DELETE FROM finals WHERE id <= "
                  "(SELECT last_id FROM rooms WHERE rooms.name = finals.room) - ?")
PRUNE_STREAMS = ("DELETE FROM streams WHERE NOT EXISTS "
                 "(SELECT 1 FROM finals WHERE finals.room = streams.room"
                 " AND finals.stream = streams.key)")


def prune_statements(retention: Retention, now: float) -> list[tuple[str, list[Any]]]:
    """The deletes that apply `retention`: each room with its own rules under
    them, every other room under the defaults; then streams left without finals."""
    statements = []
    for room, rules in retention.rooms.items():
        statements += _prune_rules(rules, now, " AND finals.room = ?", [room])
    others = list(retention.rooms)
    where = f" AND finals.room NOT IN ({', '.join('?' * len(others))})" if others else ""
    statements += _prune_rules(retention, now, where, others)
    return [*statements, (PRUNE_STREAMS, [])]


def _prune_rules(rules: Retention, now: float, where: str, rooms: list[str]
                 ) -> list[tuple[str, list[Any]]]:
    statements = []
    if rules.max_age_days is not None:
        statements.append((PRUNE_AGE + where, [now - rules.max_age_days * 86400, *rooms]))
    if rules.max_finals_per_room is not None:
        statements.append((PRUNE_PER_ROOM + where, [rules.max_finals_per_room, *rooms]))
    return statements


def select_finals(room: str, after: int, stream: str | None, limit: int | None,
                  newest: int | None) -> tuple[str, list[Any]]:
    """The query of `TranscriptStore.finals`; rows come back newest first when
    `newest` is given (the caller reverses them)."""
    sql, params = _SELECT, [room, after]
    if stream is not None:
        sql += " AND f.stream = ?"
        params.append(stream)
    if newest is not None:
        sql += " ORDER BY f.id DESC LIMIT ?"
        params.append(newest)
    else:
        sql += " ORDER BY f.id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
    return sql, params


def final_row(room: str, final_id: int, stream: StreamInfo, message: dict[str, Any],
              recorded_at: float) -> list[Any]:
    text, start_ms, end_ms, sentences = final_fields(message)
    return [room, final_id, stream.key, text, start_ms, end_ms, dump_json(sentences),
            dump_json(message), recorded_at]


def stream_row(room: str, stream: StreamInfo) -> list[Any]:
    return [room, stream.key, stream.speaker, stream.wav_name, stream.started_at]


def to_final(room: str, row: Sequence[Any]) -> StoredFinal:
    final_id, text, start_ms, end_ms, sentences, message, recorded_at, *stream = row
    return StoredFinal(room, int(final_id), to_stream(stream), text, int(start_ms), int(end_ms),
                       json.loads(sentences), json.loads(message), float(recorded_at))


def to_stream(row: Sequence[Any]) -> StreamInfo:
    key, speaker, wav_name, started_at = row
    return StreamInfo(key, speaker, wav_name, float(started_at))
