"""The default engine: FunASR streaming Paraformer + SeACo final pass (docs/design.md §5).

Online pass: per stream, the state holds what FunASR's `ParaformerStreaming`
cache holds (encoder look-back K/V, CIF integrate/hidden, decoder FSMN and
cross-attention memories, frontend look-back, overlap frames, positional
offset, unconsumed samples): the tensors in a device-side slot pool, the rest
on a small handle (paraformer_pool). `step` runs every stream of a call
through one forward per round, with FunASR's own modules (paraformer_batch,
docs/design.md §6); a stream's tokens equal FunASR's reference
`ParaformerStreaming.inference` however its audio is split and whatever else
is in the batch, padded to a bucket size or not.

Final pass: the offline model on the whole utterance (SeACo hotwords forwarded
natively), then the shared finishing step (`postprocess/finishing.py`):
punctuation (the CT-Transformer model) → ITN → hotword correction. FunASR
objects are reached only through `funasr_adapter`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from streaming.engine import (
    SAMPLE_RATE,
    ChunkRequest,
    ChunkResult,
    FinalRequest,
    FinalResult,
    SentenceStamp,
    StreamOptions,
)
from streaming.engines import funasr_adapter
from streaming.engines.paraformer_batch import SAMPLES_PER_UNIT, BatchedStreamingParaformer
from streaming.engines.paraformer_features import BatchedOnlineFrontend
from streaming.engines.paraformer_frontend import FunasrOnlineFrontend
from streaming.engines.paraformer_pool import StreamHandle
from streaming.engines.paraformer_speed import (
    FSMN_CONVS,
    online_dtype,
    quantize_linear,
    swap_fsmn_convs,
)
from streaming.engines.punctuation_model import Punctuator
from streaming.postprocess.finishing import FinalFinisher
from streaming.postprocess.punctuation import Segment, join_words

# Settings of FunASR's streaming demo (and its runtime server).
ENCODER_CHUNK_LOOK_BACK = 4
DECODER_CHUNK_LOOK_BACK = 1

_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])")


@dataclass
class ParaformerStream:
    """Opaque per-utterance state: the batched runner's handle plus the stream's options."""

    online: StreamHandle
    options: StreamOptions


def _hotword_string(hotwords: Mapping[str, int]) -> str | None:
    # SeACo takes hotwords as one space-separated string (FunASR `hotword=` argument).
    words = [w.strip() for w in hotwords if w.strip()]
    return " ".join(words) if words else None


class ParaformerStreamingEngine:
    """`Engine` over loaded FunASR AutoModels (online, offline, optional punctuation).

    `dtype` ("float16"/"bfloat16") runs the online model in half precision on
    CUDA; `quantize="int8"` swaps the `nn.Linear` layers of the online and
    offline models for dynamically quantised ones (CPU only). `bucket_batches`
    pads online batches to a few fixed sizes (same tokens, fewer kernel
    shapes); None = off (measured: not faster on CPU or H200). `frontend="batched"` computes
    the fbank features of all streams of a round at once (paraformer_features);
    "funasr" runs FunASR's own frontend stream by stream (the reference).
    `fsmn_conv="unfold"` computes the FSMN blocks' depthwise convolutions as an
    unfold and a weighted sum, and "native" runs them with cuDNN off (PyTorch's own
    depthwise kernel); same tokens. "auto": native on CUDA, conv elsewhere (bench/RESULTS.md).
    """

    name = "paraformer"

    def __init__(
        self, online: Any, offline: Any | None = None, punc: Any | None = None,
        device: str = "cpu", *, dtype: str | None = None, quantize: str | None = None,
        bucket_batches: bool | None = None, frontend: str = "batched",
        fsmn_conv: str = "auto",
    ) -> None:
        funasr_adapter.check_funasr()
        for model, role in ((online, "online"), (offline, "offline"), (punc, "punctuation")):
            if model is not None:
                funasr_adapter.check_model(model, role)
        self.online = online
        self.offline = offline
        if offline is not None:
            funasr_adapter.timestamps_per_utterance(offline)
        self.punctuator = Punctuator(punc) if punc is not None else None
        self.device = device
        self.finisher = FinalFinisher()
        if quantize is not None:
            quantize_linear(online, offline, mode=quantize, device=device)
        self.model = funasr_adapter.network(online)  # the ParaformerStreaming nn.Module
        if fsmn_conv == "auto":
            # On an H200 cuDNN's depthwise kernels cost 3x more when the batch size
            # changes every step, as in a live server (bench/RESULTS.md); the CPU has no cuDNN.
            fsmn_conv = "native" if str(device).startswith("cuda") else "conv"
        if fsmn_conv not in FSMN_CONVS:
            raise ValueError(f"fsmn_conv must be one of {FSMN_CONVS}, not {fsmn_conv!r}")
        if fsmn_conv != "conv":  # every FunASR network here has FSMN (SANM) blocks
            for model in (online, offline, punc):
                if model is not None:
                    swap_fsmn_convs(funasr_adapter.network(model), fsmn_conv)
        torch_dtype = online_dtype(dtype, device)
        if torch_dtype != torch.float32:
            self.model.to(torch_dtype)
        self.tokenizer = funasr_adapter.tokenizer(online)
        frontends = {"batched": BatchedOnlineFrontend, "funasr": FunasrOnlineFrontend}
        if frontend not in frontends:
            raise ValueError(f"frontend must be one of {sorted(frontends)}, not {frontend!r}")
        self.frontend = funasr_adapter.frontend(online)  # FunASR's WavFrontendOnline
        features = frontends[frontend](self.frontend, device, torch_dtype)
        if bucket_batches is None:
            # Measured off both ways (bench/RESULTS.md): no gain on the CPU, and on an
            # H200 in float16 padded batches were slower (80.6 vs 63.0 ms at 250 streams).
            bucket_batches = False
        self.runner = BatchedStreamingParaformer(
            self.model, features, encoder_look_back=ENCODER_CHUNK_LOOK_BACK,
            decoder_look_back=DECODER_CHUNK_LOOK_BACK, device=device, dtype=torch_dtype,
            bucket_batches=bucket_batches,
        )

    # -- online pass -------------------------------------------------------

    def chunk_samples(self, options: StreamOptions) -> int:
        return int(options.chunk_size[1]) * SAMPLES_PER_UNIT

    def new_stream(self, options: StreamOptions) -> ParaformerStream:
        # Called on the event loop: the handle holds no tensors until its first step.
        return ParaformerStream(online=self.runner.new_stream(options.chunk_size), options=options)

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
            tokens = funasr_adapter.ids_to_tokens(self.tokenizer, row_ids)
            results.append(ChunkResult(state=state, committed=tokens))
        return results

    def render(self, tokens: Sequence[str]) -> str:
        return funasr_adapter.render_tokens(tokens)

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
            outs = funasr_adapter.recognise_batch(
                self.offline, [batch[i].samples for i in indices], hotword)
            for i, res in zip(indices, outs):
                stamps = [list(t) for t in res.get("timestamp", []) or []]
                results[i] = (str(res.get("text", "")), stamps)
        return results

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
        sentences = [_sentence(seg, stamps, len(req.samples)) for seg in segments]
        spans = [(int(a), int(b)) for a, b in stamps]
        return self.finisher.finish(sentences, spans, req.options)


def _sentence(seg: Segment, stamps: list[list[int]], samples: int) -> SentenceStamp:
    """One punctuated segment with its times (before ITN and hotwords)."""
    spans = tuple((int(a), int(b)) for a, b in stamps[seg.first : seg.last + 1])
    duration_ms = int(samples * 1000 / SAMPLE_RATE)
    start, end = (spans[0][0], spans[-1][1]) if spans else (0, duration_ms)
    return SentenceStamp(text=seg.text, punc=seg.punc, start_ms=start, end_ms=end,
                         token_spans_ms=spans)
