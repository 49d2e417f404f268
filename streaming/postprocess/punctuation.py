"""Punctuation from per-word marks: joining words, cutting segments (no model).

A punctuation model (`streaming/engines/punctuation_model.py`) predicts one
mark per word (CJK character or English word); the pure functions here turn
those marks into punctuated text and segments. A segment ends at every
punctuation mark, like the FunASR runtime's `stamp_sents` (docs/design.md §4),
so each one carries exactly one `punc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streaming.postprocess.spacing import join_spaced

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
    return join_spaced(words)


def mark_for(punc_list: Sequence[str], punc_id: int, word: str) -> str:
    """The mark of class `punc_id` after `word` ("" for none); ASCII after English."""
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
    """Segments joined as a final's sentences are (`spacing.join_spaced`)."""
    return join_spaced(seg.text + seg.punc for seg in segments)
