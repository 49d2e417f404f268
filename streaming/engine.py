"""The engine interface: the one seam between the caption core and a model.

This module is the bottom of the dependency picture (docs/architecture.md):
the core (`session`, `audio`, `vad`, `config`, `events`) and every engine
import it, and it imports nothing of the project.

An engine is shaped for batches from the start (docs/design.md §6): `step` takes the
ready chunks of many streams and returns one result per chunk, in order, and
`finalize` does the same for whole utterances. Per-stream model state (cached
attention, CIF and FSMN memories, frontend look-back) is an opaque value the
engine creates with `new_stream` and hands back in every `ChunkResult`; the
session only carries it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class StreamOptions:
    """What a client's config asks of the engine for one stream."""

    # docs/design.md §4: [left, chunk, right] in 60 ms units; [5, 10, 5] = 600 ms chunks.
    chunk_size: tuple[int, int, int] = (5, 10, 5)
    hotwords: Mapping[str, int] = field(default_factory=dict)
    itn: bool = True
    lang: str | None = None


@dataclass(frozen=True)
class ChunkRequest:
    """One stride of one utterance's audio for the online (partial) pass."""

    state: Any  # from Engine.new_stream or the previous ChunkResult
    samples: np.ndarray  # float32 mono at SAMPLE_RATE, in [-1, 1]
    is_last: bool  # the utterance ended: flush everything the engine holds back


@dataclass(frozen=True)
class ChunkResult:
    state: Any
    committed: tuple[str, ...]  # tokens newly committed; never retracted later
    tentative: tuple[str, ...] = ()  # the whole uncommitted tail; may still change


@dataclass(frozen=True)
class FinalRequest:
    """A whole utterance for the final (offline) pass."""

    samples: np.ndarray  # float32 mono at SAMPLE_RATE
    options: StreamOptions = field(default_factory=StreamOptions)


@dataclass(frozen=True)
class SentenceStamp:
    """One punctuated sentence of a final, times relative to the utterance start."""

    text: str
    punc: str
    start_ms: int
    end_ms: int
    token_spans_ms: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class FinalResult:
    text: str  # punctuated, inverse-normalised, hotwords applied
    token_spans_ms: tuple[tuple[int, int], ...] = ()  # relative to utterance start
    sentences: tuple[SentenceStamp, ...] = ()


class Engine(Protocol):
    """What the session and the batch runner need from a recogniser."""

    name: str

    def chunk_samples(self, options: StreamOptions) -> int:
        """Samples (at SAMPLE_RATE) in one online stride for these options."""

    def new_stream(self, options: StreamOptions) -> Any:
        """Fresh per-utterance state for the online pass."""

    def step(self, batch: Sequence[ChunkRequest]) -> list[ChunkResult]:
        """Run one online stride for each request; results in request order."""

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        """Recognise whole utterances (final pass); results in request order."""

    def render(self, tokens: Sequence[str]) -> str:
        """Turn tokens into display text (joins CJK characters, BPE pieces, words)."""
