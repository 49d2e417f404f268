"""Punctuation restoration with a loaded CT-Transformer (FunASR `ct-punc`).

The model lives here, with the engines, because it is a FunASR model reached
through `funasr_adapter`; turning its per-word marks into text and segments is
pure post-processing (`streaming/postprocess/punctuation.py`).
"""

from __future__ import annotations

from typing import Any

from streaming.engines import funasr_adapter
from streaming.postprocess.punctuation import (
    Punctuated,
    join_words,
    mark_for,
    render_segments,
    segments_from_marks,
)


class Punctuator:
    """Wraps a loaded CT-Transformer `funasr.AutoModel`."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def split_words(self, text: str) -> list[str]:
        return funasr_adapter.split_words(self.model, text)

    def punctuate(self, text: str) -> Punctuated:
        words = self.split_words(text)
        if not words:
            return Punctuated("", (), ())
        punc_ids = funasr_adapter.punctuation_ids(self.model, join_words(words))
        if len(punc_ids) != len(words):
            punc_ids = [1] * len(words)  # no usable prediction: one sentence
        punc_list = funasr_adapter.punctuation_marks(self.model)
        marks = [mark_for(punc_list, p, w) for p, w in zip(punc_ids, words)]
        segments = segments_from_marks(words, marks)
        return Punctuated(render_segments(segments), tuple(words), tuple(segments))
