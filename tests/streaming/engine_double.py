"""A deterministic stand-in recogniser for testing the *session* (not models).

It follows the Engine contract exactly: one token per stride that carries
sound, a marker token on flush, and a final that reports what audio it got —
so tests can check which audio reached which pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streaming.engine import (
    SAMPLE_RATE,
    ChunkRequest,
    ChunkResult,
    FinalRequest,
    FinalResult,
    SentenceStamp,
    StreamOptions,
)


class StrideCountingEngine:
    name = "stride-counting"

    def __init__(self) -> None:
        self.step_batches: list[int] = []
        self.finals: list[FinalRequest] = []

    def chunk_samples(self, options: StreamOptions) -> int:
        return options.chunk_size[1] * 960

    def new_stream(self, options: StreamOptions) -> dict:
        return {"strides": 0}

    def step(self, batch: Sequence[ChunkRequest]) -> list[ChunkResult]:
        self.step_batches.append(len(batch))
        return [self._one(request) for request in batch]

    def _one(self, request: ChunkRequest) -> ChunkResult:
        strides = request.state["strides"] + 1
        loud = len(request.samples) and float(np.abs(request.samples).max()) > 0.01
        committed = (f"s{strides}",) if loud else ()
        if request.is_last:
            committed += ("<end>",)
        return ChunkResult({"strides": strides}, committed, tentative=("~",))

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        self.finals.extend(batch)
        results = []
        for request in batch:
            ms = len(request.samples) * 1000 // SAMPLE_RATE
            text = f"{len(request.samples)} samples."
            sentence = SentenceStamp(text[:-1], ".", 0, ms, ((0, ms),))
            results.append(FinalResult(text, ((0, ms),), (sentence,)))
        return results

    def render(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)
