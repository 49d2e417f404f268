"""Model jobs of a caption session, and the rule for which may start.

A session turns its audio into *jobs*: online jobs (one engine stride of an
open utterance, for partials) and final jobs (a whole utterance, for the
corrected final). Jobs keep a reference to their `Utterance`, so a new
stream may start on the connection while the previous one's jobs still run.

Ordering rule, as a table in the style of h11's `_state.py`: a job may start
only when no job it is ordered after, of a kind in its `BLOCKED_BY` entry, is
running. Chunks of a stream go one at a time (each needs the previous chunk's
model state); a final waits for its own utterance's chunks and for the
stream's previous final, so an utterance's partials precede its final and
finals come out in order. The *next* utterance's chunks do not wait for a
final, neither while it runs nor while it waits for the final lane: a chunk
may pass finals queued before it (`startable`), as in FunASR's 2pass server,
so partials never wait behind a slow or busy final pass.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from streaming.config import StreamConfig
from streaming.engine import ChunkRequest, FinalRequest


class JobKind(str, enum.Enum):
    """A job's kind; also the name of the runner lane and scheduler queue it uses."""

    ONLINE = "online"
    FINAL = "final"

    def __str__(self) -> str:
        return self.value


# Which running kinds keep a job of each kind from starting; for a final,
# only its own utterance's chunks count (`_ordered_after`).
BLOCKED_BY: dict[JobKind, frozenset[JobKind]] = {
    JobKind.ONLINE: frozenset({JobKind.ONLINE}),
    JobKind.FINAL: frozenset({JobKind.ONLINE, JobKind.FINAL}),
}


# An offline stream's finals carry no model state from one to the next, so
# several of one stream may run at once, in one batch: a long file alone can
# fill the final pass (docs/design.md §6).
STATELESS_FINAL_BLOCKED_BY = frozenset({JobKind.ONLINE})


def may_start(kind: JobKind, running: Collection[JobKind], stateless: bool = False) -> bool:
    if stateless and kind is JobKind.FINAL:
        return not STATELESS_FINAL_BLOCKED_BY.intersection(running)
    return not BLOCKED_BY[kind].intersection(running)


@dataclass
class Utterance:
    """One utterance of one stream, as its jobs see it."""

    config: StreamConfig
    segment: int
    start: int  # samples since stream start, pre-roll included
    engine_state: Any = None
    consumed: int = 0  # audio handed to the online pass so far (absolute sample)
    committed: list[str] = field(default_factory=list)
    tentative: tuple[str, ...] = ()
    end: int | None = None
    speech_end: int | None = None
    end_of_stream: bool = False


@dataclass
class OnlineJob:
    utterance: Utterance
    request: ChunkRequest
    end: int  # absolute sample the chunk reaches
    ready_at: float
    kind = JobKind.ONLINE
    stateless = False


@dataclass
class FinalJob:
    utterance: Utterance
    request: FinalRequest
    ready_at: float
    kind = JobKind.FINAL

    @property
    def stateless(self) -> bool:
        """An offline stream's final: independent of the stream's other finals."""
        return self.utterance.config.mode == "offline"


@dataclass
class EndMarker:
    """Queued at end of stream with no open utterance: emits the closing message."""

    config: StreamConfig


@dataclass
class EndAckMarker:
    """Queued after a stream's last job when the client's end carried `is_end`:
    FunASR's current clients wait for this acknowledgement (docs/design.md §4)."""

    config: StreamConfig


Job = OnlineJob | FinalJob
Marker = EndMarker | EndAckMarker  # queue entries that emit a message, not model work


def startable(queue: Sequence[Job | Marker], in_flight: Collection[Job],
              kind: JobKind) -> int | None:
    """Index in `queue` of the job of `kind` that may start now, or None; pure.

    A chunk may pass finals waiting before it in the queue (they belong to
    earlier utterances); nothing passes a chunk or a marker, so a final starts
    only from the front and a stream's closing message stays last."""
    for index, entry in enumerate(queue):
        if isinstance(entry, Marker):
            return None
        if entry.kind is not kind:
            if entry.kind is JobKind.FINAL:
                continue  # an earlier utterance's final: the chunk may pass it
            return None
        running = {job.kind for job in in_flight if _ordered_after(entry, job)}
        return index if may_start(kind, running, entry.stateless) else None
    return None


def _ordered_after(job: Job, running: Job) -> bool:
    """Whether `job` must wait for `running` (of a kind in BLOCKED_BY): a final
    waits only for its own utterance's chunks, a chunk for any chunk."""
    if job.kind is JobKind.FINAL and running.kind is JobKind.ONLINE:
        return running.utterance is job.utterance
    return True
