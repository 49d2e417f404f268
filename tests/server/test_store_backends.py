"""Every transcript store backend meets the same contract (docs/transcripts.md):
memory, SQLite and a real PostgreSQL server."""

from __future__ import annotations

import asyncio

import pytest

from server.store import Retention, StreamInfo, open_store

ADA = StreamInfo("a1", "Ada", "mic", 1000.0)
GRACE = StreamInfo("g1", "Grace", "mic", 1005.0)


def final(text: str, start: int = 0) -> dict:
    return {"mode": "2pass-offline", "text": text, "start": start, "end": start + 900,
            "stamp_sents": [{"text_seg": text, "punc": "", "start": start, "end": start + 900,
                             "ts_list": []}]}


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request, tmp_path):
    if request.param == "memory":
        spec = "memory"
    elif request.param == "sqlite":
        spec = str(tmp_path / "t.sqlite3")
    else:
        spec = request.getfixturevalue("postgres_url")
    store = open_store(spec)
    await store.open()
    yield store
    await store.close()


async def test_ids_increase_by_one_per_room_and_finals_come_back_whole(store):
    ids = [await store.append("r", ADA, final("one"), 1.0),
           await store.append("other", ADA, final("x"), 1.0),
           await store.append("r", GRACE, final("two", 1000), 2.0)]
    assert ids == [1, 1, 2]
    got = await store.finals("r")
    assert [(f.id, f.text, f.speaker, f.start_ms, f.end_ms) for f in got] == \
        [(1, "one", "Ada", 0, 900), (2, "two", "Grace", 1000, 1900)]
    assert got[1].message == {**final("two", 1000), "id": 2}
    assert got[1].sentences == final("two", 1000)["stamp_sents"]
    assert await store.streams("r") == [ADA, GRACE]
    assert await store.last_id("r") == 2 and await store.last_id("nowhere") == 0


async def test_finals_after_an_id_of_a_stream_and_the_newest(store):
    for i in range(6):
        await store.append("r", ADA if i % 2 == 0 else GRACE, final(str(i)), float(i))
    assert [f.id for f in await store.finals("r", 3)] == [4, 5, 6]
    assert [f.id for f in await store.finals("r", 1, limit=2)] == [2, 3]
    assert [f.id for f in await store.finals("r", newest=2)] == [5, 6]
    assert [f.id for f in await store.finals("r", stream="g1")] == [2, 4, 6]


async def test_retention_by_age_and_per_room_keeps_ids_increasing(store):
    for i in range(5):
        await store.append("r", ADA, final(str(i)), 100.0 + i)
    assert await store.prune(Retention(max_age_days=1.0), now=100.0 + 86400 + 1.5) == 2
    assert [f.id for f in await store.finals("r")] == [3, 4, 5]
    assert await store.prune(Retention(max_finals_per_room=1), now=0.0) == 2
    assert [f.id for f in await store.finals("r")] == [5]
    assert await store.append("r", ADA, final("later"), 200.0) == 6


async def test_each_room_keeps_its_own_rules_and_the_others_the_defaults(store):
    # 4 finals in each room, recorded at 100..103 (the age cut-off falls after 101)
    for room in ("board", "hall", "standup", "lobby"):
        for i in range(4):
            await store.append(room, ADA, final(f"{room} {i}"), 100.0 + i)
    retention = Retention(max_finals_per_room=3, rooms={
        "board": Retention(),  # kept forever
        "hall": Retention(max_finals_per_room=10),  # longer than the default
        "standup": Retention(max_age_days=1.0, max_finals_per_room=3),  # shorter
    })
    assert await store.prune(retention, now=100.0 + 86400 + 1.5) == 1 + 2
    assert [f.id for f in await store.finals("board")] == [1, 2, 3, 4]
    assert [f.id for f in await store.finals("hall")] == [1, 2, 3, 4]
    assert [f.id for f in await store.finals("standup")] == [3, 4]  # age, though 3 fit
    assert [f.id for f in await store.finals("lobby")] == [2, 3, 4]  # the default
    for room in ("board", "standup", "lobby"):
        assert await store.append(room, ADA, final("later"), 200.0) == 5
        assert await store.last_id(room) == 5
    assert await store.prune(retention, now=200.0) == 1  # lobby: its newest 3 again
    assert [f.id for f in await store.finals("lobby")] == [3, 4, 5]
    assert [s.key for s in await store.streams("standup")] == ["a1"]


async def test_concurrent_appends_get_distinct_consecutive_ids(store):
    ids = await asyncio.gather(*(store.append("r", ADA, final(str(i)), 1.0) for i in range(20)))
    assert sorted(ids) == list(range(1, 21))
    assert [f.text for f in await store.finals("r")] == [str(i) for i in
                                                         sorted(range(20), key=ids.__getitem__)]
