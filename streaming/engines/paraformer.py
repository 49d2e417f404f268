"""The default engine: FunASR streaming Paraformer + SeACo final pass (DESIGN §5).

Online pass: per stream, the state is FunASR's own `ParaformerStreaming` cache
(encoder look-back K/V + FSMN memories `opt`, CIF `cif_hidden`/`cif_alphas`,
decoder `decode_fsmn`, frontend waveform/fbank/LFR look-back, `feats` overlap
frames, `start_idx`, unconsumed `prev_samples`). Each stride runs FunASR's own
pieces in the order `ParaformerStreaming.inference`/`generate_chunk` run them
(extract_fbank with the frontend cache → encode_chunk → calc_predictor_chunk →
cal_decoder_with_predictor_chunk → greedy ids → tokens), so the tokens equal
FunASR's reference exactly however the audio is split. `step` has a batched
shape; inside it still runs one stream at a time (batching is the next step,
DESIGN §6).

Final pass: the offline model on the whole utterance (SeACo hotwords forwarded
natively), then punctuation → ITN → hotword correction.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from streaming.engines.base import (
    ChunkRequest,
    ChunkResult,
    FinalRequest,
    FinalResult,
    SentenceStamp,
    StreamOptions,
)
from streaming.engines.funasr_loading import load_funasr_model, pick_device
from streaming.postprocess.hotwords import HotwordCorrector
from streaming.postprocess.itn import InverseNormalizer
from streaming.postprocess.punctuation import Punctuator, Segment, join_words

# FunASR's streaming frontend works in 60 ms units of 960 samples (chunk_size[1] * 960).
SAMPLES_PER_UNIT = 960
# Settings of FunASR's streaming demo (and its runtime server).
ENCODER_CHUNK_LOOK_BACK = 4
DECODER_CHUNK_LOOK_BACK = 1

_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])")


@dataclass
class ParaformerStream:
    """Opaque per-utterance state: FunASR's cache dict plus the stream's options."""

    cache: dict[str, Any]
    options: StreamOptions
    samples_fed: int = 0


def _hotword_string(hotwords: Mapping[str, int]) -> str | None:
    # SeACo takes hotwords as one space-separated string (FunASR `hotword=` argument).
    words = [w.strip() for w in hotwords if w.strip()]
    return " ".join(words) if words else None


class ParaformerStreamingEngine:
    """`Engine` over loaded FunASR AutoModels (online, offline, optional punctuation)."""

    name = "paraformer"

    def __init__(
        self, online: Any, offline: Any | None = None, punc: Any | None = None,
        device: str = "cpu",
    ) -> None:
        self.online = online
        self.offline = offline
        self.punctuator = Punctuator(punc) if punc is not None else None
        self.device = device
        self.itn = InverseNormalizer()
        self.model = online.model  # the ParaformerStreaming nn.Module
        self.frontend = online.kwargs["frontend"]
        self.tokenizer = online.kwargs["tokenizer"]

    @classmethod
    def from_models(
        cls, online: str, offline: str | None = None, punc: str | None = None,
        device: str = "auto", **overrides: Any,
    ) -> ParaformerStreamingEngine:
        """Load by FunASR alias, hub id or local directory (see funasr_loading)."""
        device = pick_device(device)
        online_model = load_funasr_model(online, device=device, role="online", **overrides)
        offline_model = (
            load_funasr_model(offline, device=device, role="offline", **overrides)
            if offline else None
        )
        punc_model = (
            load_funasr_model(punc, device=device, role="punctuation", **overrides)
            if punc else None
        )
        return cls(online_model, offline_model, punc_model, device=device)

    # -- online pass -------------------------------------------------------

    def chunk_samples(self, options: StreamOptions) -> int:
        return int(options.chunk_size[1]) * SAMPLES_PER_UNIT

    def _cache_kwargs(self, options: StreamOptions) -> dict[str, Any]:
        return dict(
            chunk_size=list(options.chunk_size),
            encoder_chunk_look_back=ENCODER_CHUNK_LOOK_BACK,
            decoder_chunk_look_back=DECODER_CHUNK_LOOK_BACK,
            encoder_conf=self.online.kwargs["encoder_conf"],
            frontend_conf=self.online.kwargs["frontend_conf"],
        )

    def new_stream(self, options: StreamOptions) -> ParaformerStream:
        cache = self.model.init_cache({}, **self._cache_kwargs(options))
        return ParaformerStream(cache=cache, options=options)

    def step(self, batch: Sequence[ChunkRequest]) -> list[ChunkResult]:
        with torch.inference_mode():
            return [self._step_one(req) for req in batch]

    def _step_one(self, req: ChunkRequest) -> ChunkResult:
        state: ParaformerStream = req.state
        cache = state.cache
        stride = self.chunk_samples(state.options)
        samples = torch.from_numpy(np.ascontiguousarray(req.samples, dtype=np.float32))
        audio = torch.cat((cache["prev_samples"], samples))
        # Same split as ParaformerStreaming.inference: whole strides now, the rest
        # waits in prev_samples; on the last call one more (short or empty) stride.
        n = len(audio) // stride + int(req.is_last)
        rest = 0 if req.is_last else len(audio) % stride
        tokens: list[str] = []
        for i in range(n):
            is_final = req.is_last and i == n - 1
            tokens += self._run_stride(cache, audio[i * stride : (i + 1) * stride], is_final)
        cache["prev_samples"] = audio[len(audio) - rest :] if rest > 0 else torch.empty(0)
        state.samples_fed += len(samples)
        if req.is_last:  # FunASR re-initialises after the final chunk; a new utterance starts
            state = self.new_stream(state.options)
        return ChunkResult(state=state, committed=tuple(tokens))

    def _features(self, cache: dict, audio: torch.Tensor, is_final: bool):
        from funasr.utils.load_utils import extract_fbank

        if is_final and len(audio) < SAMPLES_PER_UNIT:
            # Too little audio for a frame: flush the encoder's overlap frames instead.
            cache["encoder"]["tail_chunk"] = True
            speech = cache["encoder"]["feats"]
            return speech, torch.tensor([speech.shape[1]], dtype=torch.int64)
        return extract_fbank(
            [audio], data_type="sound", frontend=self.frontend,
            cache=cache["frontend"], is_final=is_final,
        )

    def _run_stride(self, cache: dict, audio: torch.Tensor, is_final: bool) -> list[str]:
        model = self.model
        speech, speech_lengths = self._features(cache, audio, is_final)
        speech = speech.to(self.device)
        speech_lengths = speech_lengths.to(self.device)
        enc, enc_lens = model.encode_chunk(speech, speech_lengths, cache=cache, is_final=is_final)
        embeds, token_len, _, _ = model.calc_predictor_chunk(
            enc, enc_lens, cache=cache, is_final=is_final
        )
        token_len = token_len.round().long()
        if torch.max(token_len) < 1:
            return []
        dec_out, _ = model.cal_decoder_with_predictor_chunk(
            enc, enc_lens, embeds, token_len, cache=cache
        )
        ids = dec_out[0, : token_len[0], :].argmax(dim=-1).tolist()
        skip = {model.eos, model.sos, model.blank_id}
        return list(self.tokenizer.ids2tokens([i for i in ids if i not in skip]))

    def render(self, tokens: Sequence[str]) -> str:
        from funasr.utils.postprocess_utils import sentence_postprocess

        return sentence_postprocess(list(tokens))[0] if tokens else ""

    # -- final pass --------------------------------------------------------

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        with torch.inference_mode():
            return [self._finalize_one(req) for req in batch]

    def _recognise(self, req: FinalRequest) -> tuple[str, list[list[int]]]:
        """Offline model on the utterance: (space-separated words, per-word [start, end] ms)."""
        if self.offline is None:
            stream = self.new_stream(req.options)
            result = self._step_one(ChunkRequest(stream, req.samples, is_last=True))
            return " ".join(result.committed).replace("@@ ", ""), []
        if len(req.samples) < SAMPLES_PER_UNIT:
            return "", []
        cfg: dict[str, Any] = {}
        hotword = _hotword_string(req.options.hotwords)
        if hotword is not None:
            cfg["hotword"] = hotword
        with contextlib.redirect_stdout(io.StringIO()):
            out = self.offline.generate(input=np.asarray(req.samples, dtype=np.float32), **cfg)
        res = out[0] if out else {}
        return str(res.get("text", "")), [list(t) for t in res.get("timestamp", []) or []]

    def _finalize_one(self, req: FinalRequest) -> FinalResult:
        text, stamps = self._recognise(req)
        words = text.split()
        if not words:
            return FinalResult(text="")
        if self.punctuator is not None:
            punctuated = self.punctuator.punctuate(_CJK_GAP.sub("", text))
            words, segments = list(punctuated.words), list(punctuated.segments)
        else:
            segments = [Segment(join_words(words), "", 0, len(words) - 1)]
        if len(stamps) != len(words):
            stamps = []  # no per-word alignment: sentences get no token spans
        sentences = [self._sentence(seg, stamps, req) for seg in segments]
        return FinalResult(
            text=_join_sentences([s.text + s.punc for s in sentences]),
            token_spans_ms=tuple((int(a), int(b)) for a, b in stamps),
            sentences=tuple(sentences),
        )

    def _sentence(self, seg: Segment, stamps: list[list[int]], req: FinalRequest) -> SentenceStamp:
        text = seg.text
        if req.options.itn:
            text = self.itn.normalize(text)
        text = HotwordCorrector(req.options.hotwords).correct(text)
        spans = tuple((int(a), int(b)) for a, b in stamps[seg.first : seg.last + 1])
        duration_ms = int(len(req.samples) * 1000 / 16000)
        start, end = (spans[0][0], spans[-1][1]) if spans else (0, duration_ms)
        return SentenceStamp(text=text, punc=seg.punc, start_ms=start, end_ms=end,
                             token_spans_ms=spans)


def _join_sentences(pieces: Sequence[str]) -> str:
    out = ""
    for piece in pieces:
        if out and piece and ord(piece[0]) < 128 and piece[0].isalnum():
            out += " "
        out += piece
    return out
