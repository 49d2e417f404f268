"""Batching policy across sessions (docs/design.md §6), pure and clock-free.

Sessions with a job ready are *offered* to the scheduler, at most once per
kind (a session's jobs of one kind run one at a time, in order; a chunk of
the next utterance may be offered while a final waits, jobs.startable). Jobs of one kind ("online"
chunks, "final" passes) batch together. A batch is due when `max_batch_size`
entries of a kind are waiting, or when the oldest entry has waited
`max_wait_ms` — a real deadline: `deadline()` tells the driver exactly when to
wake, so nothing polls. Entries leave in arrival order, so no session starves.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 32
    max_wait_ms: float = 20.0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0")


class BatchScheduler:
    def __init__(self, policy: BatchPolicy | None = None) -> None:
        self.policy = policy or BatchPolicy()
        self._waiting: dict[str, OrderedDict[Hashable, float]] = {}

    def offer(self, key: Hashable, kind: str, now: float) -> None:
        """`key` has a job of `kind` ready since `now`; repeat offers are ignored."""
        self._waiting.setdefault(kind, OrderedDict()).setdefault(key, now)

    def discard(self, key: Hashable) -> None:
        for queue in self._waiting.values():
            queue.pop(key, None)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    def deadline(self, kinds: Collection[str] | None = None) -> float | None:
        """When the oldest waiting entry (of `kinds`, default all) has waited
        its time out; None if none waits."""
        oldest = [next(iter(queue.values())) for kind, queue in self._waiting.items()
                  if queue and (kinds is None or kind in kinds)]
        return min(oldest) + self.policy.max_wait_ms / 1000 if oldest else None

    def next_batch(
        self, now: float, kinds: Collection[str] | None = None,
    ) -> tuple[str, list[Hashable]] | None:
        """The batch to run now, oldest kind first, or None if none is due.
        `kinds` limits it to those kinds (the driver's free lanes)."""
        due = [
            (next(iter(queue.values())), kind)
            for kind, queue in self._waiting.items()
            if queue and (kinds is None or kind in kinds) and self._is_due(queue, now)
        ]
        if not due:
            return None
        _, kind = min(due)
        queue = self._waiting[kind]
        keys = list(queue)[: self.policy.max_batch_size]
        for key in keys:
            del queue[key]
        return kind, keys

    def _is_due(self, queue: OrderedDict[Hashable, float], now: float) -> bool:
        oldest = next(iter(queue.values()))
        full = len(queue) >= self.policy.max_batch_size
        return full or now >= oldest + self.policy.max_wait_ms / 1000
