"""`bench/soak.py`'s bookkeeping: what each stream sent against what arrived."""

from __future__ import annotations

from collections import Counter, defaultdict

from bench.soak_clients import SentStream

PLACEMENT_SLACK_MS = 600  # VAD pre-roll (300 ms) and frame rounding, with room to spare
PROBLEMS_KEPT = 20


def compare(streams: list[SentStream], room_finals: dict[str, list[dict]]) -> dict:
    """Utterance by utterance: every clip a stream started must have exactly one
    final in its room, in the right place; a speaker that waited for its own
    finals must have got the same ones."""
    received: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for room, finals in room_finals.items():
        for final in finals:
            received[room, final["wav_name"]].append(final)
    totals = Counter()
    problems: list[str] = []
    for stream in streams:
        if stream.error is not None:
            continue  # refused or failed by the server: counted by errors_by_kind
        got = received.get((stream.room, stream.wav_name), [])
        found = _check_stream(stream, got, totals)
        if found and len(problems) < PROBLEMS_KEPT:
            problems.append(f"{stream.wav_name} ({stream.kind}, {stream.ending}): {found}")
    return {
        "streams": len(streams),
        "streams_by_ending": dict(Counter(s.ending for s in streams if s.error is None)),
        "streams_by_kind": dict(Counter(s.kind for s in streams)),
        "utterances": totals["utterances"],
        "finals_received": totals["received"],
        "lost": totals["lost"],
        "duplicated": totals["duplicated"],
        "extra": totals["extra"],
        "misplaced": totals["misplaced"],
        "direct_mismatches": totals["direct_mismatches"],
        "problems": problems,
    }


def _check_stream(stream: SentStream, got: list[dict], totals: Counter) -> str:
    expected = len(stream.clips_ms)
    counts = Counter(final["segment"] for final in got)
    lost = [n for n in range(expected) if counts[n] == 0]
    duplicated = sum(c - 1 for n, c in counts.items() if n < expected and c > 1)
    extra = sum(c for n, c in counts.items() if n >= expected)
    misplaced = [final["segment"] for final in got
                 if stream.kind == "live" and final["segment"] < expected
                 and not _overlaps(final, stream.clips_ms[final["segment"]])]
    mismatch = stream.direct_finals is not None and _by_segment(stream.direct_finals) != \
        _by_segment(got)
    totals.update(utterances=expected, received=len(got), lost=len(lost), duplicated=duplicated,
                  extra=extra, misplaced=len(misplaced), direct_mismatches=int(mismatch))
    found = []
    if lost:
        found.append(f"lost segments {lost} of {expected}")
    if duplicated:
        found.append(f"{duplicated} duplicated")
    if extra:
        found.append(f"{extra} finals beyond the {expected} clips")
    if misplaced:
        found.append(f"segments {misplaced} away from their clips")
    if mismatch:
        found.append("its own finals differ from its room's")
    return "; ".join(found)


def _overlaps(final: dict, clip_ms: tuple[int, int]) -> bool:
    start, end = clip_ms
    return final["start"] < end + PLACEMENT_SLACK_MS and final["end"] > start - PLACEMENT_SLACK_MS


def _by_segment(finals: list[dict]) -> list[tuple]:
    return sorted((f["segment"], f["text"], f["start"], f["end"]) for f in finals)


def errors_by_kind(streams: list[SentStream]) -> dict[str, int]:
    """What the server refused or failed, by its error code (or how it closed)."""
    return dict(Counter(stream.error for stream in streams if stream.error is not None))


def compare_store(room_finals: dict[str, list[dict]], stored: dict[str, list[dict]]) -> dict:
    """What the rooms' viewers received against what the store holds: every
    final received is stored under its id with the same text (written before
    sent), no utterance is stored twice, nothing stored went unreceived."""
    received = {(room, f["id"]): f for room, finals in room_finals.items() for f in finals}
    kept = {(room, f["id"]): f for room, finals in stored.items() for f in finals}
    utterances = Counter((room, f["wav_name"], f["segment"])
                         for room, finals in stored.items() for f in finals)
    return {
        "finals_stored": len(kept),
        "received_not_stored": sum(key not in kept for key in received),
        "stored_differently": sum(key in kept and kept[key]["text"] != f["text"]
                                  for key, f in received.items()),
        "stored_twice": sum(count - 1 for count in utterances.values() if count > 1),
        "stored_not_received": sum(key not in received for key in kept),
    }
