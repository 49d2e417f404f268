"""Punctuation restoration with a loaded CT-Transformer (FunASR `ct-punc`).

The model predicts one class per word (CJK character or English word, FunASR's
`split_words`); `Punctuator` turns that into punctuated text and segments. A
segment ends at every punctuation mark, like the FunASR runtime's
`stamp_sents` (DESIGN §4), so each one carries exactly one `punc`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# CT-Transformer emits full-width marks; after an English word FunASR writes ASCII ones.
_ASCII_PUNC = {"，": ",", "。": ".", "？": "?", "、": ",", "！": "!"}
_SENTENCE_END = ("。", "？", "！")


@dataclass(frozen=True)
class Segment:
    """Words [first, last] (indices into Punctuated.words) and the mark that ends them."""

    text: str  # without the mark
    punc: str
    first: int
    last: int


@dataclass(frozen=True)
class Punctuated:
    text: str
    words: tuple[str, ...]
    segments: tuple[Segment, ...]


def _is_ascii_word(word: str) -> bool:
    return bool(word) and ord(word[0]) < 128


def join_words(words: Sequence[str]) -> str:
    """CJK characters joined directly, a space between two English words."""
    out = ""
    for word in words:
        if out and _is_ascii_word(word) and _is_ascii_word(out[-1]):
            out += " "
        out += word
    return out


def _mark(punc_list: Sequence[str], punc_id: int, word: str) -> str:
    mark = punc_list[punc_id] if 0 <= punc_id < len(punc_list) else ""
    if mark in ("_", "<unk>"):
        return ""
    return _ASCII_PUNC.get(mark, mark) if _is_ascii_word(word) else mark


def segments_from_marks(words: Sequence[str], marks: Sequence[str]) -> list[Segment]:
    """Cut after every mark; a trailing unmarked run becomes a segment ending a sentence."""
    segments, first = [], 0
    for i, mark in enumerate(marks):
        if mark or i == len(words) - 1:
            if not mark:
                mark = "." if _is_ascii_word(words[i]) else "。"
            segments.append(Segment(join_words(words[first : i + 1]), mark, first, i))
            first = i + 1
    if segments and segments[-1].punc in (",", "，", "、"):
        # The utterance ended: close it with a full stop, as FunASR's punc model does.
        last = segments[-1]
        stop = "." if last.punc == "," else "。"
        segments[-1] = Segment(last.text, stop, last.first, last.last)
    return segments


def render_segments(segments: Sequence[Segment]) -> str:
    out = ""
    for seg in segments:
        piece = seg.text + seg.punc
        if out and _is_ascii_word(piece) and out[-1] in ".?!,":
            out += " "
        out += piece
    return out


class Punctuator:
    """Wraps a loaded CT-Transformer `funasr.AutoModel`."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def split_words(self, text: str) -> list[str]:
        from funasr.models.ct_transformer.utils import split_words

        return split_words(text, jieba_usr_dict=getattr(self.model.model, "jieba_usr_dict", None))

    def punctuate(self, text: str) -> Punctuated:
        words = self.split_words(text)
        if not words:
            return Punctuated("", (), ())
        with contextlib.redirect_stdout(io.StringIO()):  # FunASR prints progress
            result = self.model.generate(input=join_words(words))[0]
        punc_array = result.get("punc_array")
        punc_ids = [int(p) for p in punc_array] if punc_array is not None else []
        if len(punc_ids) != len(words):
            punc_ids = [1] * len(words)  # no usable prediction: one sentence
        punc_list = list(self.model.model.punc_list)
        marks = [_mark(punc_list, p, w) for p, w in zip(punc_ids, words)]
        segments = segments_from_marks(words, marks)
        return Punctuated(render_segments(segments), tuple(words), tuple(segments))
