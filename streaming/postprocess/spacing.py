"""Where a space goes when pieces of caption text are joined: one rule for the
words of a sentence, for the sentences of a final, and so for its whole text.

A space goes between two pieces only where both sides are spaced script (Latin
letters, digits, ASCII marks): "hello world", "Hello. World.". CJK characters and
full-width marks take none on either side: "你好hello", "你好。Hello", "Hello.你好。".
This is how FunASR's CT-Transformer writes mixed text, and because a final's text
is its sentences (text + punc) joined by this same rule, a client can rebuild the
text from `stamp_sents` (docs/design.md §4).
"""

from __future__ import annotations

from collections.abc import Iterable


def join_spaced(pieces: Iterable[str]) -> str:
    out = ""
    for piece in pieces:
        if out and piece and _is_spaced(out[-1]) and _is_spaced(piece[0]):
            out += " "
        out += piece
    return out


def _is_spaced(char: str) -> bool:
    return not (char.isspace() or is_cjk(char))


def is_cjk(char: str) -> bool:
    """CJK marks, kana and ideographs (with compatibility and supplementary
    ideographs), full-width forms: written without spaces."""
    return ("\u3000" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"
            or "\uff00" <= char <= "\uffef" or "\U00020000" <= char <= "\U0003ffff")
