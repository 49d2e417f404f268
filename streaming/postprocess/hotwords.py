"""Hotword correction on final text (docs/design.md §2: final → punctuation → ITN → hotwords).

SeACo-Paraformer biases decoding towards hotwords natively; this pass
complements it and serves engines without native biasing (whisper): spans of
the final text that nearly match a hotword are replaced by the hotword. The
higher a hotword's weight (FunASR protocol: `{"阿里巴巴": 20}`), the looser the
match it accepts. Pure functions; no model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rapidfuzz import fuzz

# Similarity (0–100) a span needs: weight 1 → ~93, weight 10 → ~78, weight ≥ 20 → 60.
MAX_THRESHOLD = 95.0
MIN_THRESHOLD = 60.0
# Latin words: a short common word shares too many letters with a longer
# hotword ("are" vs "Gardner" scores 60), so demand more, and similar length.
MIN_THRESHOLD_LATIN = 75.0
MAX_LENGTH_RATIO_LATIN = 1.4
THRESHOLD_PER_WEIGHT = 1.75

_ASCII_WORD = re.compile(r"[A-Za-z0-9']+")
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")


@dataclass(frozen=True)
class Replacement:
    start: int
    end: int
    hotword: str
    score: float


def threshold_for_weight(weight: float) -> float:
    """Minimum similarity for a hotword of this weight; rises as weight falls."""
    return max(MIN_THRESHOLD, MAX_THRESHOLD - THRESHOLD_PER_WEIGHT * max(weight, 0.0))


def _is_ascii(word: str) -> bool:
    return all(ord(c) < 128 for c in word)


def _cjk_candidates(text: str, hotword: str) -> list[tuple[int, int]]:
    """Windows of len(hotword) characters inside runs of CJK characters.

    Same length only: ASR slips on Chinese hotwords are mostly substituted
    homophones, and shorter windows would score high on a hotword's prefix
    ("阿里巴" vs "阿里巴巴") and be "corrected" into a duplicate.
    """
    n = len(hotword)
    return [
        (start, start + n)
        for run in _CJK_RUN.finditer(text)
        for start in range(run.start(), run.end() - n + 1)
    ]


def _word_candidates(text: str, hotword: str) -> list[tuple[int, int]]:
    """Windows of as many whole words as the hotword has."""
    words = list(_ASCII_WORD.finditer(text))
    k = len(hotword.split())
    return [(words[i].start(), words[i + k - 1].end()) for i in range(len(words) - k + 1)]


def _exact_spans(text: str, hotwords: Mapping[str, float]) -> list[tuple[int, int]]:
    lowered = text.lower()
    spans = []
    for hotword in hotwords:
        word = hotword.strip().lower()
        start = lowered.find(word) if word else -1
        while start >= 0:
            spans.append((start, start + len(word)))
            start = lowered.find(word, start + 1)
    return spans


def find_replacements(text: str, hotwords: Mapping[str, float]) -> list[Replacement]:
    """Non-overlapping near-miss spans, best score first; text already spelling a hotword stays."""
    found = []
    protected = _exact_spans(text, hotwords)
    for hotword, weight in hotwords.items():
        hotword = hotword.strip()
        if len(hotword) < 2:
            continue  # one character gives no evidence to match on
        threshold = threshold_for_weight(float(weight))
        ascii_word = _is_ascii(hotword)
        if ascii_word:
            threshold = max(threshold, MIN_THRESHOLD_LATIN)
        spans = _word_candidates(text, hotword) if ascii_word else _cjk_candidates(text, hotword)
        for start, end in spans:
            if any(start < p_end and end > p_start for p_start, p_end in protected):
                continue
            span = text[start:end]
            a, b = (span.lower(), hotword.lower()) if ascii_word else (span, hotword)
            if a == b or (ascii_word and not _similar_length(a, b)):
                continue
            score = fuzz.ratio(a, b)
            if score >= threshold:
                found.append(Replacement(start, end, hotword, score))
    found.sort(key=lambda r: (-r.score, r.start))
    chosen: list[Replacement] = []
    for r in found:
        if all(r.end <= c.start or r.start >= c.end for c in chosen):
            chosen.append(r)
    return sorted(chosen, key=lambda r: r.start)


def _similar_length(a: str, b: str) -> bool:
    short, long = sorted((len(a), len(b)))
    return long <= MAX_LENGTH_RATIO_LATIN * short


def apply_replacements(text: str, replacements: list[Replacement]) -> str:
    out, cursor = [], 0
    for r in replacements:
        out.append(text[cursor : r.start])
        out.append(r.hotword)
        cursor = r.end
    out.append(text[cursor:])
    return "".join(out)


class HotwordCorrector:
    """`HotwordCorrector({"阿里巴巴": 20}).correct("阿里爸爸的股价")` → "阿里巴巴的股价"."""

    def __init__(self, hotwords: Mapping[str, float]) -> None:
        self.hotwords = dict(hotwords)

    def correct(self, text: str) -> str:
        if not self.hotwords or not text:
            return text
        return apply_replacements(text, find_replacements(text, self.hotwords))
