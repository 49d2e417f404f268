"""Whisper (faster-whisper / CTranslate2) behind the batch-shaped Engine interface.

Theory of operation
-------------------
Whisper is not a streaming model: it reads a whole window of audio and writes
text. The online pass therefore re-decodes the utterance's audio so far every
`stride_s` (docs/design.md §5); which words become committed (never retracted)
and which stay tentative is the LocalAgreement-2 policy in
`local_agreement.py`, which also caps the window. Committed words that still
lie in the window are forced as the decoder *prefix*; those trimmed away are
the *prompt* (previous-text context).

Batching (docs/design.md §6): the windows of all requests in a `step` (and the
utterances of a `finalize`) are padded to Whisper's 30 s input and run
through one `encode` / `generate` / `align` call. CTranslate2 requires the
start-of-transcript token at the same position in every prompt, so requests
are grouped by prompt-context length; context is cut to a few fixed lengths
(`_CONTEXT_BUCKETS`) so that groups stay few.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.engine import (
    SAMPLE_RATE,
    ChunkRequest,
    ChunkResult,
    FinalRequest,
    FinalResult,
    StreamOptions,
)
from streaming.engines.local_agreement import (
    WhisperStream,
    Word,
    agree,
    bound_window,
    ms,
    split_sentences,
    split_words,
)
from streaming.postprocess.finishing import FinalFinisher

WHISPER_INPUT_S = 30  # the encoder always reads 30 s of (padded) features
_HOP = 160  # feature frames are 10 ms
_MIN_SAMPLES = SAMPLE_RATE // 10
_CONTEXT_BUCKETS = (0, 16, 48, 112, 223)  # prompt-context lengths (tokens) that share a batch
# faster-whisper's own no-speech rule: a window that is probably silence and
# decoded with low confidence yields nothing (tiny models say "you" to noise).
_NO_SPEECH_PROB = 0.6
_LOW_LOGPROB = -1.0


# ---- decoding jobs ---------------------------------------------------------------------


@dataclass(frozen=True)
class _DecodeJob:
    samples: np.ndarray
    language: str
    context: str = ""  # previous text (goes before start-of-transcript)
    prefix: str = ""  # forced start of the transcript (committed words)
    hotwords: str | None = None
    max_new_tokens: int | None = None


@dataclass
class _Hypothesis:
    prefix: list[Word]  # the forced prefix words, re-aligned
    words: list[Word]  # what the model wrote after the prefix
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0


# ---- engine ----------------------------------------------------------------------


class WhisperEngine:
    """faster-whisper with LocalAgreement-2 partials and batched decoding."""

    name = "whisper"

    def __init__(
        self,
        model: Any,  # faster_whisper.WhisperModel
        *,
        stride_s: float = 1.0,
        max_window_s: float = 15.0,
        final_beam_size: int = 5,
        language: str = "en",
    ) -> None:
        if not 0 < max_window_s <= WHISPER_INPUT_S:
            raise ValueError(f"max_window_s must be in (0, {WHISPER_INPUT_S}]; got {max_window_s}")
        if stride_s <= 0 or stride_s >= max_window_s:
            raise ValueError(f"stride_s must be in (0, max_window_s); got {stride_s}")
        self.model = model
        self.stride = int(stride_s * SAMPLE_RATE)
        self.max_window = int(max_window_s * SAMPLE_RATE)
        self.final_beam_size = final_beam_size
        self.language = language
        self.multilingual = bool(model.model.is_multilingual)
        self._tokenizers: dict[str, Any] = {}
        self.finisher = FinalFinisher()

    # ---- Engine protocol -------------------------------------------------------

    def chunk_samples(self, options: StreamOptions) -> int:
        # Whisper re-reads the whole window per stride; the client's chunk_size
        # (600 ms) would make that too costly, so the engine sets its own stride.
        return self.stride

    def new_stream(self, options: StreamOptions) -> WhisperStream:
        return WhisperStream(options)

    def step(self, batch: Sequence[ChunkRequest]) -> list[ChunkResult]:
        forced = []
        for request in batch:
            state = request.state
            state.window = np.concatenate((state.window, request.samples.astype(np.float32)))
            forced.append(bound_window(state, self.max_window))
        hypotheses = self._decode([self._online_job(r.state) for r in batch], beam_size=1)
        return [
            agree(request.state, _speech_words(hypothesis), hypothesis.prefix, request.is_last,
                  words)
            for request, hypothesis, words in zip(batch, hypotheses, forced)
        ]

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        results: list[FinalResult | None] = [None] * len(batch)
        short = [i for i, r in enumerate(batch) if len(r.samples) <= WHISPER_INPUT_S * SAMPLE_RATE]
        jobs = [self._final_job(batch[i]) for i in short]
        for i, hypothesis in zip(short, self._decode(jobs, beam_size=self.final_beam_size)):
            results[i] = self._final_result(_speech_words(hypothesis), batch[i].options)
        for i, request in enumerate(batch):
            if results[i] is None:  # over 30 s: faster-whisper seeks window by window
                results[i] = self._final_result(self._transcribe_long(request), request.options)
        return results

    def render(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)

    # ---- online pass -------------------------------------------------------------

    def _online_job(self, state: WhisperStream) -> _DecodeJob:
        seconds = len(state.window) / SAMPLE_RATE
        return _DecodeJob(
            samples=state.window,
            language=self._language(state.options),
            context=" ".join(state.context),
            prefix=" ".join(w.text for w in state.in_window),
            # A greedy decode can loop on odd audio; no speech runs > ~6 tokens/s.
            max_new_tokens=int(seconds * 8) + 16,
        )

    # ---- final pass -----------------------------------------------------------------

    def _final_job(self, request: FinalRequest) -> _DecodeJob:
        return _DecodeJob(
            samples=request.samples.astype(np.float32),
            language=self._language(request.options),
            hotwords=_hotword_prompt(request.options),
        )

    def _transcribe_long(self, request: FinalRequest) -> list[Word]:
        segments, _ = self.model.transcribe(
            request.samples.astype(np.float32),
            language=self._language(request.options),
            beam_size=self.final_beam_size,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            hotwords=_hotword_prompt(request.options),
        )
        return [
            Word(w.word.strip(), w.start, w.end)
            for segment in segments
            for w in segment.words or ()
            if w.word.strip()
        ]

    def _final_result(self, words: list[Word], options: StreamOptions) -> FinalResult:
        """Whisper writes its own punctuation; then the shared ITN → hotwords step."""
        spans = [(ms(w.start), ms(w.end)) for w in words]
        return self.finisher.finish(split_sentences(words), spans, options)

    # ---- batched decoding ---------------------------------------------------------

    def _decode(self, jobs: Sequence[_DecodeJob], beam_size: int) -> list[_Hypothesis]:
        """Decode many windows; one encode/generate/align per prompt shape."""
        prompts = [self._prompt(job) for job in jobs]
        groups: dict[tuple[str, int], list[int]] = {}
        for i, (job, (prompt, _)) in enumerate(zip(jobs, prompts)):
            sot = prompt.index(self._tokenizer(job.language).sot)
            groups.setdefault((job.language, sot), []).append(i)
        results: list[_Hypothesis | None] = [None] * len(jobs)
        for (language, _), members in groups.items():
            decoded = self._decode_group(
                [jobs[i] for i in members], [prompts[i] for i in members], language, beam_size
            )
            for i, hypothesis in zip(members, decoded):
                results[i] = hypothesis
        return results

    def _prompt(self, job: _DecodeJob) -> tuple[list[int], int]:
        """The prompt tokens, and how many of them are the forced prefix."""
        tokenizer = self._tokenizer(job.language)
        context = tokenizer.encode(" " + job.context) if job.context else []
        bucket = max(b for b in _CONTEXT_BUCKETS if b <= len(context))
        context = context[len(context) - bucket :]
        prompt = self.model.get_prompt(
            tokenizer, context, without_timestamps=False, prefix=job.prefix or None,
            hotwords=job.hotwords,
        )
        prefix_tokens = len(tokenizer.encode(" " + job.prefix.strip())) if job.prefix else 0
        return prompt, prefix_tokens

    def _decode_group(
        self,
        jobs: Sequence[_DecodeJob],
        prompts: Sequence[tuple[list[int], int]],
        language: str,
        beam_size: int,
    ) -> list[_Hypothesis]:
        from faster_whisper.audio import pad_or_trim

        tokenizer = self._tokenizer(language)
        frames = WHISPER_INPUT_S * SAMPLE_RATE // _HOP
        # An empty window (a flush with no new audio) still needs one feature frame.
        audio = [j.samples if len(j.samples) else np.zeros(_HOP, np.float32) for j in jobs]
        features = np.stack([pad_or_trim(self.model.feature_extractor(a), frames) for a in audio])
        encoded = self.model.encode(features)
        longest = max(len(p) for p, _ in prompts)
        budgets = [j.max_new_tokens for j in jobs if j.max_new_tokens is not None]
        max_length = self.model.max_length
        if len(budgets) == len(jobs):
            max_length = min(max_length, longest + max(budgets))
        outputs = self.model.model.generate(
            encoded, [p for p, _ in prompts], beam_size=beam_size, max_length=max_length,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
        )
        # Under ~0.1 s there is nothing to align against (and nothing said).
        texts = [
            [t for t in out.sequences_ids[0] if t < tokenizer.eot]
            if len(job.samples) >= _MIN_SAMPLES else []
            for job, out in zip(jobs, outputs)
        ]
        num_frames = [max(1, min(len(j.samples) // _HOP, frames)) for j in jobs]
        alignments = self.model.find_alignment(tokenizer, texts, encoded, num_frames)
        return [
            self._hypothesis(job, prefix, text, alignment, out, tokenizer)
            for job, (_, prefix), text, alignment, out in zip(
                jobs, prompts, texts, alignments, outputs
            )
        ]

    def _hypothesis(self, job, prefix_tokens, text, alignment, output, tokenizer) -> _Hypothesis:
        prefix, new = split_words(alignment, prefix_tokens, tokenizer)
        seconds = len(job.samples) / SAMPLE_RATE
        # Words "heard" past the end of the audio are the model inventing a
        # continuation (common when the window ends mid-word).
        new = [w for w in new if w.start < seconds - 0.05]
        for word in (*prefix, *new):
            word.end = min(word.end, seconds)
        length = len(output.sequences_ids[0])
        return _Hypothesis(
            prefix=prefix,
            words=new,
            no_speech_prob=float(output.no_speech_prob),
            avg_logprob=float(output.scores[0]) * length / (length + 1),
        )

    # ---- small helpers ----------------------------------------------------------------

    def _language(self, options: StreamOptions) -> str:
        if not self.multilingual:
            return "en"  # .en models know no other language token
        return options.lang or self.language

    def _tokenizer(self, language: str) -> Any:
        if language not in self._tokenizers:
            from faster_whisper.tokenizer import Tokenizer

            self._tokenizers[language] = Tokenizer(
                self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]


# ---- helpers ------------------------------------------------------------------------


def _speech_words(hypothesis: _Hypothesis) -> list[Word]:
    if hypothesis.no_speech_prob > _NO_SPEECH_PROB and hypothesis.avg_logprob < _LOW_LOGPROB:
        return []
    return hypothesis.words


def _hotword_prompt(options: StreamOptions) -> str | None:
    # faster-whisper takes hotwords as prompt text; weights have no meaning there.
    return " ".join(options.hotwords) or None
