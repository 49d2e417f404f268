"""The finishing step every engine's final goes through (docs/design.md §2).

punctuation → ITN → hotwords. Each engine punctuates in its own way (Paraformer
with a CT-Transformer model, Whisper writes its own marks) and hands over the
punctuated sentences with their times; from there the steps are the same for
all engines: inverse text normalisation (if the stream asked for it), hotword
correction, and joining the sentences into the final's text. Sentences are
finished one by one and joined by the one spacing rule (`spacing.join_spaced`),
so a final's text is exactly its `sentences` (text + punc) joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from streaming.engine import FinalResult, SentenceStamp, StreamOptions
from streaming.postprocess.hotwords import HotwordCorrector
from streaming.postprocess.itn import InverseNormalizer
from streaming.postprocess.spacing import join_spaced


class FinalFinisher:
    """`finish(sentences, spans, options)` → the `FinalResult` a client gets."""

    def __init__(self) -> None:
        self.itn = InverseNormalizer()

    def finish(
        self,
        sentences: Sequence[SentenceStamp],
        token_spans_ms: Sequence[tuple[int, int]],
        options: StreamOptions,
    ) -> FinalResult:
        corrector = HotwordCorrector(options.hotwords)
        finished = tuple(
            replace(s, text=self._text(s.text, options.itn, corrector)) for s in sentences
        )
        return FinalResult(
            text=join_spaced(s.text + s.punc for s in finished),
            token_spans_ms=tuple(token_spans_ms),
            sentences=finished,
        )

    def _text(self, text: str, itn: bool, corrector: HotwordCorrector) -> str:
        if itn:
            text = self.itn.normalize(text)
        return corrector.correct(text)

