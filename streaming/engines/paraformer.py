"""The default engine: FunASR streaming Paraformer + SeACo final pass (DESIGN §5).

Online pass: per stream, the state holds what FunASR's `ParaformerStreaming`
cache holds (encoder look-back K/V, CIF integrate/hidden, decoder FSMN and
cross-attention memories, frontend look-back, overlap frames, positional
offset, unconsumed samples), as tensors that stack across streams. `step`
runs every stream of a call through one forward per round, with FunASR's own
modules (paraformer_batch, DESIGN §6); a stream's tokens equal FunASR's
reference `ParaformerStreaming.inference` however its audio is split and
whatever else is in the batch.

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

from streaming.engine import (
    ChunkRequest,
    ChunkResult,
    FinalRequest,
    FinalResult,
    SentenceStamp,
    StreamOptions,
)
from streaming.engines.paraformer_batch import (
    SAMPLES_PER_UNIT,
    BatchedStreamingParaformer,
    StreamState,
)
from streaming.engines.paraformer_speed import online_dtype, quantize_linear
from streaming.postprocess.hotwords import HotwordCorrector
from streaming.postprocess.itn import InverseNormalizer
from streaming.postprocess.punctuation import Punctuator, Segment, join_words

# Settings of FunASR's streaming demo (and its runtime server).
ENCODER_CHUNK_LOOK_BACK = 4
DECODER_CHUNK_LOOK_BACK = 1

_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])")


@dataclass
class ParaformerStream:
    """Opaque per-utterance state: the batched runner's tensors plus the stream's options."""

    online: StreamState
    options: StreamOptions


def _hotword_string(hotwords: Mapping[str, int]) -> str | None:
    # SeACo takes hotwords as one space-separated string (FunASR `hotword=` argument).
    words = [w.strip() for w in hotwords if w.strip()]
    return " ".join(words) if words else None


class ParaformerStreamingEngine:
    """`Engine` over loaded FunASR AutoModels (online, offline, optional punctuation).

    `dtype` ("float16"/"bfloat16") runs the online model in half precision on
    CUDA; `quantize="int8"` swaps the `nn.Linear` layers of the online and
    offline models for dynamically quantised ones (CPU only).
    """

    name = "paraformer"

    def __init__(
        self, online: Any, offline: Any | None = None, punc: Any | None = None,
        device: str = "cpu", *, dtype: str | None = None, quantize: str | None = None,
    ) -> None:
        self.online = online
        self.offline = offline
        if offline is not None:
            _timestamps_per_utterance(offline.model)
        self.punctuator = Punctuator(punc) if punc is not None else None
        self.device = device
        self.itn = InverseNormalizer()
        if quantize is not None:
            quantize_linear(online, offline, mode=quantize, device=device)
        self.model = online.model  # the ParaformerStreaming nn.Module
        torch_dtype = online_dtype(dtype, device)
        if torch_dtype != torch.float32:
            self.model.to(torch_dtype)
        self.frontend = online.kwargs["frontend"]
        self.tokenizer = online.kwargs["tokenizer"]
        self.runner = BatchedStreamingParaformer(
            self.model, self.frontend, encoder_look_back=ENCODER_CHUNK_LOOK_BACK,
            decoder_look_back=DECODER_CHUNK_LOOK_BACK, device=device, dtype=torch_dtype,
        )

    # -- online pass -------------------------------------------------------

    def chunk_samples(self, options: StreamOptions) -> int:
        return int(options.chunk_size[1]) * SAMPLES_PER_UNIT

    def new_stream(self, options: StreamOptions) -> ParaformerStream:
        return ParaformerStream(online=self.runner.new_state(options.chunk_size), options=options)

    def step(self, batch: Sequence[ChunkRequest]) -> list[ChunkResult]:
        """One batched forward per round for all streams (paraformer_batch)."""
        with torch.inference_mode():
            ids = self.runner.step(
                [req.state.online for req in batch], [req.samples for req in batch],
                [req.is_last for req in batch],
            )
        results = []
        for req, row_ids in zip(batch, ids):
            # FunASR re-initialises after the final chunk; a new utterance starts.
            state = self.new_stream(req.state.options) if req.is_last else req.state
            tokens = tuple(self.tokenizer.ids2tokens(row_ids)) if row_ids else ()
            results.append(ChunkResult(state=state, committed=tokens))
        return results

    def render(self, tokens: Sequence[str]) -> str:
        from funasr.utils.postprocess_utils import sentence_postprocess

        return sentence_postprocess(list(tokens))[0] if tokens else ""

    # -- final pass --------------------------------------------------------

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        """Offline model over the whole batch (one forward per hotword set), then
        punctuation and ITN per utterance (CT-Transformer's inference is batch-1)."""
        with torch.inference_mode():
            recognised = self._recognise(batch)
            return [self._finalize_one(req, *rec) for req, rec in zip(batch, recognised)]

    def _recognise(self, batch: Sequence[FinalRequest]) -> list[tuple[str, list[list[int]]]]:
        """Per utterance: (space-separated words, per-word [start, end] ms)."""
        results: list[tuple[str, list[list[int]]]] = [("", [])] * len(batch)
        if self.offline is None:
            streams = [ChunkRequest(self.new_stream(r.options), r.samples, True) for r in batch]
            return [(" ".join(res.committed).replace("@@ ", ""), []) for res in self.step(streams)]
        # SeACo encodes the hotword list once per call: batch utterances that share one.
        groups: dict[str | None, list[int]] = {}
        for i, req in enumerate(batch):
            if len(req.samples) >= SAMPLES_PER_UNIT:
                groups.setdefault(_hotword_string(req.options.hotwords), []).append(i)
        for hotword, indices in groups.items():
            outs = self._offline_batch([batch[i].samples for i in indices], hotword)
            for i, res in zip(indices, outs):
                stamps = [list(t) for t in res.get("timestamp", []) or []]
                results[i] = (str(res.get("text", "")), stamps)
        return results

    def _offline_batch(self, audio: list[np.ndarray], hotword: str | None) -> list[dict]:
        cfg: dict[str, Any] = {"batch_size": len(audio)}
        if hotword is not None:
            cfg["hotword"] = hotword
        with contextlib.redirect_stdout(io.StringIO()):
            out = self.offline.generate(
                input=[np.asarray(a, dtype=np.float32) for a in audio], **cfg)
        # FunASR returns no result at all for a batch in which nothing fired a token.
        return out if len(out) == len(audio) else [{} for _ in audio]

    def _finalize_one(self, req: FinalRequest, text: str, stamps: list[list[int]]) -> FinalResult:
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


def _timestamps_per_utterance(model: Any) -> None:
    """Make the offline model run its timestamp head one utterance at a time.

    SeACo's timestamp head (CifPredictorV3, `cnn_blstm` upsampling) feeds a
    batch's padding through its BLSTM (FunASR masks the alphas, not the LSTM
    input), which moved the last token's stamp of a shorter utterance by a
    frame in a batched final. The head is a conv and a small BLSTM, tiny next to
    the encoder and decoder, so per utterance it costs little and batched
    finals equal single ones.
    """
    batched = getattr(model, "calc_predictor_timestamp", None)
    if batched is None:
        return

    def per_utterance(encoder_out, encoder_out_lens, token_num):
        if encoder_out.shape[0] == 1:
            return batched(encoder_out, encoder_out_lens, token_num)
        parts = [
            batched(encoder_out[i : i + 1, :n], encoder_out_lens[i : i + 1], token_num[i : i + 1])
            for i, n in enumerate(encoder_out_lens.tolist())
        ]
        return tuple(_pad_cat([p[k] for p in parts]) for k in range(len(parts[0])))

    model.calc_predictor_timestamp = per_utterance


def _pad_cat(rows: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate (1, L_i, ...) tensors on dim 0, zero-padding dim 1 to the longest."""
    longest = max(r.shape[1] for r in rows)
    out = rows[0].new_zeros((len(rows), longest, *rows[0].shape[2:]))
    for i, r in enumerate(rows):
        out[i, : r.shape[1]] = r[0]
    return out


def _join_sentences(pieces: Sequence[str]) -> str:
    out = ""
    for piece in pieces:
        if out and piece and ord(piece[0]) < 128 and piece[0].isalnum():
            out += " "
        out += piece
    return out
