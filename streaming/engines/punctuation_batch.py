"""CT-Transformer punctuation for many texts with one forward per round (docs/design.md §6).

FunASR's `CTTransformer.inference` takes one text. It splits the words into
mini-sentences of `split_size` (20) words and runs them in order: each
forward sees the words the previous one left after its last sentence end
("。" or "？"; past 200 words, its last comma) in front of the next
mini-sentence. Only the last mini-sentence's last mark can then change: it
becomes the sentence end unless the text already ends with "。", "？", "."
or "?".

The carry makes one text's mini-sentences sequential, but different texts are
independent: round r runs the r-th mini-sentence of every text still going as
one padded batch. The encoder masks padding (attention and FSMN), so a row's
classes are those of the row alone up to float rounding; the tests compare
with FunASR's own inference. Word-level models (a jieba user dictionary)
re-expand the classes afterwards; they stay on FunASR's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from streaming.engines import funasr_adapter

CACHE_POP_TRIGGER_LIMIT = 200  # CTTransformer.inference: cut a carry this long at a comma
ENDS_A_TEXT = frozenset("。？.?")  # a text ending in one of these keeps its last mark


@dataclass
class _Text:
    """One text's progress through its mini-sentences."""

    minis: list[tuple[list[str], np.ndarray]]  # (words, token ids) per mini-sentence
    done: int = 0
    carry_words: list[str] = field(default_factory=list)
    carry_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    classes: list[int] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return self.done < len(self.minis)

    def next_row(self) -> tuple[list[str], np.ndarray]:
        """The next forward's words and ids: the carry, then the next mini-sentence."""
        words, ids = self.minis[self.done]
        return self.carry_words + words, np.concatenate((self.carry_ids, ids))


def punctuation_ids_many(model: Any, texts: Sequence[str]) -> list[list[int]]:
    """`funasr_adapter.punctuation_ids` of every text, batched across texts."""
    net = funasr_adapter.network(model)
    if getattr(net, "jieba_usr_dict", None) is not None:
        return [funasr_adapter.punctuation_ids(model, t) for t in texts]
    split_size = int(model.kwargs.get("split_size", 20))
    tokenizer = funasr_adapter.tokenizer(model)
    states = [_start(model, tokenizer, t, split_size) for t in texts]
    device = next(net.parameters()).device
    with torch.inference_mode():
        while live := [s for s in states if s is not None and s.pending]:
            rows = [s.next_row() for s in live]
            classes = _forward(net, [ids for _, ids in rows], device)
            for state, (words, ids), row_classes in zip(live, rows, classes):
                _take(net, state, words, ids, row_classes)
    return [[] if s is None else s.classes for s in states]


def _start(model: Any, tokenizer: Any, text: str, split_size: int) -> _Text | None:
    if not text or not text.strip():
        return None  # FunASR returns no classes
    words = funasr_adapter.split_words(model, text)
    if not words:
        return None
    ids = np.asarray(tokenizer.encode(words), dtype=np.int64)
    # split_to_mini_sentence: whole mini-sentences of split_size words, then the rest
    return _Text([(words[a : a + split_size], ids[a : a + split_size])
                  for a in range(0, len(words), split_size)])


def _forward(net: Any, rows: list[np.ndarray], device: torch.device) -> list[list[int]]:
    """punc_forward over the padded rows; the top class of each real position."""
    lengths = [len(r) for r in rows]
    ids = torch.zeros(len(rows), max(lengths), dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.from_numpy(row)
    logits, _ = net.punc_forward(text=ids.to(device),
                                 text_lengths=torch.tensor(lengths, dtype=torch.int32).to(device))
    top = logits.topk(1, dim=2).indices.squeeze(2).cpu().tolist()  # FunASR's topk(1)
    return [row[:n] for row, n in zip(top, lengths)]


def _take(net: Any, state: _Text, words: list[str], ids: np.ndarray,
          classes: list[int]) -> None:
    """CTTransformer.inference's bookkeeping after one forward of one text (its
    row's words and ids, and their classes)."""
    marks = net.punc_list
    state.done += 1
    if state.pending:  # keep the words after the last sentence end for the next round
        end, last_comma = -1, -1
        for i in range(len(classes) - 2, 1, -1):
            if marks[classes[i]] in ("。", "？"):
                end = i
                break
            if last_comma < 0 and marks[classes[i]] == "，":
                last_comma = i
        if end < 0 and len(words) > CACHE_POP_TRIGGER_LIMIT and last_comma >= 0:
            end = last_comma  # too long: cut at the comma, made a sentence end
            classes[end] = net.sentence_end_id
        state.carry_words, state.carry_ids = words[end + 1 :], ids[end + 1 :]
        classes = classes[: end + 1]
    elif classes and _last_char(words[-1], marks[classes[-1]]) not in ENDS_A_TEXT:
        classes[-1] = net.sentence_end_id
    state.classes += classes


def _last_char(word: str, mark: str) -> str:
    """The last character FunASR writes for a word and its mark ("_": none); a word
    starting with a one-byte character gets the ASCII form of ，。？."""
    if mark == "_":
        return word[-1]
    if len(word[0].encode()) == 1:
        return {"，": ",", "。": ".", "？": "?"}.get(mark, mark)
    return mark
