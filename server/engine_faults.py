"""What the runner does when the engine fails or stalls (docs/design.md §8).

One stream's bad chunk must not cost the other streams of its batch their
results: when a batched call raises, each job is run again alone on the same
lane, and only the jobs that fail alone are failed (their streams get 1011).
This assumes what an engine that raises must do anyway: leave the streams'
state as it was before the call.

A call that does not return within the watchdog's limit (a wedged device, a
deadlock) fails the streams of its batch at once with a clear error, instead
of leaving them silent. A thread cannot be stopped from outside, so the lane
stays busy until the call returns; jobs of other streams wait for it, and
everything goes on from there. The runner counts stalls for `/health`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("captiond.runner")

STALL_MESSAGE = "recognition stalled on the server; see its log"
FAILED_MESSAGE = "recognition failed on the server; see its log"


@dataclass(frozen=True)
class JobFailed:
    """Stands in a batch's results for a job the engine failed on alone."""

    error: BaseException | None  # None: the whole batch failed outside the engine


def infer_isolating(infer: Callable[[str, list], list], kind: str, jobs: Sequence) -> list:
    """`infer(kind, jobs)`; if the batch raises, each job alone, so that one
    failing job gives a `JobFailed` in its place and the others their results.
    Runs on the lane's thread."""
    try:
        return infer(kind, list(jobs))
    except Exception as batch_error:
        if len(jobs) == 1:
            log.error("engine failed on a %s job", kind, exc_info=batch_error)
            return [JobFailed(batch_error)]
        log.warning("engine failed on a %s batch of %d (%s); running its jobs one by one",
                    kind, len(jobs), batch_error)
    results: list[Any] = []
    for job in jobs:
        try:
            (result,) = infer(kind, [job])
        except Exception as error:
            log.error("engine failed on a %s job", kind, exc_info=error)
            result = JobFailed(error)
        results.append(result)
    return results


async def within_watchdog(call: asyncio.Future, limit_s: float | None) -> bool:
    """Wait for `call` up to `limit_s` seconds; False if it is still running
    (the call itself is left to finish)."""
    done, _ = await asyncio.wait({call}, timeout=limit_s)
    return bool(done)
