"""LocalAgreement-2: the commit policy of the Whisper engine's partials.

Whisper re-decodes the utterance's window every stride (`whisper.py`). The
policy of Macháček et al. ("Turning Whisper into Real-Time Transcription
System", 2023) keeps its captions from flickering: a word is *committed* once
two consecutive hypotheses agree on it (and on everything before it);
committed words are never retracted, the rest of the latest hypothesis is
*tentative* (docs/design.md §4 `stable` / `unstable`).

The window is capped: once it grows past the cap, the audio up to the end of
a committed word is dropped (preferably at a sentence end) and those words
move into the decoder prompt (`WhisperStream.context`), so a stride's cost
stays bounded however long the utterance. Pure functions and one state
record; no model.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streaming.engine import SAMPLE_RATE, ChunkResult, SentenceStamp, StreamOptions

SENTENCE_ENDS = ".?!"
PUNCTUATION = set(string.punctuation) | set("“”‘’¿¡")


@dataclass
class Word:
    text: str  # leading space stripped, punctuation attached
    start: float  # seconds from the window start
    end: float


@dataclass
class WhisperStream:
    """Per-utterance online state (opaque to the session)."""

    options: StreamOptions
    window: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    committed: list[str] = field(default_factory=list)  # every committed word
    in_window: list[Word] = field(default_factory=list)  # committed words still in the window
    tentative: list[Word] = field(default_factory=list)  # previous hypothesis beyond them

    @property
    def context(self) -> list[str]:
        """Committed words whose audio was trimmed away: the decoder prompt."""
        return self.committed[: len(self.committed) - len(self.in_window)]


# ---- the policy --------------------------------------------------------------------


def agree(
    state: WhisperStream, words: list[Word], prefix: list[Word], is_last: bool,
    forced: list[str],
) -> ChunkResult:
    """Commit what this hypothesis (`words`, after the forced `prefix`) and the
    previous one share; `forced` words were committed by `bound_window`."""
    refresh_times(state.in_window, prefix)
    if is_last:
        agreed = len(words)  # the utterance ended: nothing can change any more
    else:
        agreed = common_prefix(state.tentative, words)
    new = words[:agreed]
    state.committed.extend(w.text for w in new)
    state.in_window = state.in_window + new
    state.tentative = words[agreed:]
    committed = (*forced, *(w.text for w in new))
    return ChunkResult(state, committed, tuple(w.text for w in state.tentative))


def bound_window(state: WhisperStream, max_window: int) -> list[str]:
    """Keep the window within `max_window` samples; returns words it had to force-commit."""
    excess = len(state.window) - max_window
    if excess <= 0:
        return []
    forced: list[str] = []
    keep = words_to_keep(state.in_window, state.tentative, excess)
    if keep is None:
        # Nothing agreed for a whole window (noise, babble): commit the last
        # hypothesis rather than let the window, and its cost, grow.
        forced = [w.text for w in state.tentative]
        state.committed.extend(forced)
        state.in_window, state.tentative = state.in_window + state.tentative, []
        keep = 0
    cut = max(excess, cut_before(state.in_window, keep, state.tentative))
    state.window = state.window[cut:]
    # Dropped words go to the prompt; kept ones stay the prefix, re-timed.
    shift = cut / SAMPLE_RATE
    kept = state.in_window[len(state.in_window) - keep :] if keep else []
    state.in_window = [Word(w.text, w.start - shift, w.end - shift) for w in kept]
    return forced


# ---- word handling -----------------------------------------------------------------

def split_words(
    alignment: list[dict], prefix_tokens: int, tokenizer: Any
) -> tuple[list[Word], list[Word]]:
    """Split an alignment into the forced-prefix words and the new words.

    Punctuation is glued to the word before it, but never onto a committed
    (prefix) word: that word was already sent and cannot change."""
    prefix: list[Word] = []
    new: list[Word] = []
    seen = 0
    for item in alignment:
        tokens = item["tokens"]
        in_prefix = max(0, min(len(tokens), prefix_tokens - seen))
        seen += len(tokens)
        start, end = float(item["start"]), float(item["end"])
        if in_prefix == len(tokens):
            if item["word"].strip():
                prefix.append(Word(item["word"].strip(), start, end))
            continue
        # A word that straddles the prefix end keeps only its new tokens.
        text = tokenizer.decode(tokens[in_prefix:]) if in_prefix else item["word"]
        append_word(new, text, start, end)
    return prefix, new


def append_word(words: list[Word], text: str, start: float, end: float) -> None:
    stripped = text.strip()
    if not stripped:
        return
    if all(c in PUNCTUATION for c in stripped):
        if words:  # "today" + "." → "today." (a mark's own duration means nothing)
            words[-1] = Word(words[-1].text + stripped, words[-1].start, words[-1].end)
        return  # punctuation right after committed words is dropped (see docstring)
    words.append(Word(stripped, start, end))


def refresh_times(committed: list[Word], aligned: list[Word]) -> None:
    """Take the latest alignment's times for committed words (the trim points
    get better as more audio follows them); their text never changes."""
    if not committed or not aligned:
        return
    if len(aligned) != len(committed):  # re-tokenised differently: trust only the end
        aligned = [*committed[:-1], aligned[-1]]
    for word, fresh in zip(committed, aligned):
        word.start, word.end = fresh.start, fresh.end


def normalise(word: str) -> str:
    """How LocalAgreement compares words: case and punctuation do not matter."""
    folded = "".join(c for c in word.lower() if c not in PUNCTUATION)
    return folded or word


def common_prefix(previous: Sequence[Word], current: Sequence[Word]) -> int:
    count = 0
    for a, b in zip(previous, current):
        if normalise(a.text) != normalise(b.text):
            break
        count += 1
    return count


def words_to_keep(committed: list[Word], tentative: list[Word], excess: int) -> int | None:
    """How many committed words to keep when cutting a full window, which must
    lose at least `excess` samples. Cutting at a sentence end is preferred
    (Whisper restarts cleanly there, mid-sentence it may mishear the first
    word); None when no committed word lies far enough in."""
    if not committed or cut_before(committed, 0, tentative) < excess:
        return None
    for keep in range(len(committed)):
        if cut_before(committed, keep, tentative) < excess:
            break
        if committed[len(committed) - keep - 1].text[-1] in SENTENCE_ENDS:
            return keep
    return 0


def cut_before(committed: list[Word], keep: int, tentative: list[Word]) -> int:
    """The sample after the committed words but the last `keep`: the end of the
    last dropped word, never into the next word (times are only ~0.1 s exact)."""
    dropped = len(committed) - keep
    if dropped <= 0:
        return 0
    end = committed[dropped - 1].end
    following = committed[dropped:] + tentative
    if following:
        end = min(end, following[0].start)
    return max(0, int(end * SAMPLE_RATE))


def split_sentences(words: Sequence[Word]) -> tuple[SentenceStamp, ...]:
    """Split on . ? ! at word ends; text without its closing mark, as FunASR does."""
    sentences, current = [], []
    for word in words:
        current.append(word)
        if word.text[-1] in SENTENCE_ENDS or word is words[-1]:
            text = " ".join(w.text for w in current)
            punc = text[-1] if text[-1] in SENTENCE_ENDS else ""
            spans = tuple((ms(w.start), ms(w.end)) for w in current)
            sentences.append(
                SentenceStamp(text[: len(text) - len(punc)], punc, spans[0][0], spans[-1][1], spans)
            )
            current = []
    return tuple(sentences)


def ms(seconds: float) -> int:
    return int(round(seconds * 1000))
