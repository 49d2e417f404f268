"""Test-only fault hooks around a real engine: audio marked with a sample value
makes the engine raise or stall on exactly the requests that carry it.

The runner, sessions and connections under test are the real ones; only the
engine is told where to fail, the way a bad chunk or a wedged device would.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from streaming.engine import ChunkRequest, FinalRequest

RAISE_MARK = 12345  # PCM16 sample values; natural audio never repeats them this often
STALL_MARK = 23456
MARK_EVERY = 100  # one marked sample per 100: ~96 in a 600 ms stride
MARKS_NEEDED = 20


def marked(pcm: bytes, mark: int) -> bytes:
    """`pcm` (PCM16) with every MARK_EVERY-th sample set to `mark`."""
    samples = np.frombuffer(pcm, dtype="<i2").copy()
    samples[::MARK_EVERY] = mark
    return samples.tobytes()


class InjectedFault(RuntimeError):
    pass


class FaultInjectingEngine:
    """Delegates to `inner`; raises on requests marked RAISE_MARK and blocks on
    those marked STALL_MARK until `release` is set."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = f"faulty-{inner.name}"
        self.raised_in_batches: list[int] = []  # the size of each batch that raised
        self.stalled = threading.Event()
        self.release = threading.Event()

    def chunk_samples(self, options):
        return self.inner.chunk_samples(options)

    def new_stream(self, options):
        return self.inner.new_stream(options)

    def render(self, tokens):
        return self.inner.render(tokens)

    def step(self, batch: Sequence[ChunkRequest]):
        self._inject(batch)
        return self.inner.step(batch)

    def finalize(self, batch: Sequence[FinalRequest]):
        self._inject(batch)
        return self.inner.finalize(batch)

    def _inject(self, batch) -> None:
        if any(_carries(request.samples, STALL_MARK) for request in batch):
            self.stalled.set()
            self.release.wait(30)
        if any(_carries(request.samples, RAISE_MARK) for request in batch):
            self.raised_in_batches.append(len(batch))
            raise InjectedFault("injected: the engine failed on this chunk")


def _carries(samples: np.ndarray, mark: int) -> bool:
    return int(np.count_nonzero(samples == np.float32(mark / 32768.0))) >= MARKS_NEEDED
