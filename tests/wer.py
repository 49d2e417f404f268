"""Word error rate for the real-speech checks."""

from __future__ import annotations

import re
import string


def words(text: str) -> list[str]:
    """Lowercased words without punctuation (hyphens split words)."""
    cleaned = re.sub(f"[{re.escape(string.punctuation)}]", " ", text.lower())
    return cleaned.split()


def wer(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / max(1, len(ref))
