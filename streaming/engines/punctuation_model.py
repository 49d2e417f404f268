"""Punctuation restoration with a loaded CT-Transformer (FunASR `ct-punc`).

The model lives here, with the engines, because it is a FunASR model reached
through `funasr_adapter`; turning its per-word marks into text and segments is
pure post-processing (`streaming/postprocess/punctuation.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streaming.engines import funasr_adapter
from streaming.engines.punctuation_batch import punctuation_ids_many
from streaming.postprocess.punctuation import (
    Punctuated,
    join_words,
    mark_for,
    render_segments,
    segments_from_marks,
)


class Punctuator:
    """Wraps a loaded CT-Transformer `funasr.AutoModel`."""

    def __init__(self, model: Any, batched: bool = True) -> None:
        """`batched=False`: FunASR's own inference, one text at a time."""
        self.model = model
        self.batched = batched

    def split_words(self, text: str) -> list[str]:
        return funasr_adapter.split_words(self.model, text)

    def punctuate(self, text: str) -> Punctuated:
        return self.punctuate_many([text])[0]

    def punctuate_many(self, texts: Sequence[str]) -> list[Punctuated]:
        """Every text punctuated, with one model forward per round of
        mini-sentences for all of them (punctuation_batch.py)."""
        words = [self.split_words(t) for t in texts]
        texts = [join_words(w) for w in words]
        ids = (punctuation_ids_many(self.model, texts) if self.batched
               else [funasr_adapter.punctuation_ids(self.model, t) for t in texts])
        punc_list = funasr_adapter.punctuation_marks(self.model)
        return [self._render(w, p, punc_list) for w, p in zip(words, ids)]

    @staticmethod
    def _render(words: list[str], punc_ids: list[int], punc_list: list[str]) -> Punctuated:
        if not words:
            return Punctuated("", (), ())
        if len(punc_ids) != len(words):
            punc_ids = [1] * len(words)  # no usable prediction: one sentence
        marks = [mark_for(punc_list, p, w) for p, w in zip(punc_ids, words)]
        segments = segments_from_marks(words, marks)
        return Punctuated(render_segments(segments), tuple(words), tuple(segments))
