"""The paraformer engine's final pass on its own: offline Paraformer (SeACo
hotwords forwarded natively) over whole utterances, then the shared finishing
step (`postprocess/finishing.py`): CT-Transformer punctuation → ITN → hotwords.

It is separate from the online pass so that it can run in a process of its
own (server/final_process.py): both passes are mostly Python on a small
model, and in one process they contend for the GIL (docs/workers.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from streaming.engine import SAMPLE_RATE, FinalRequest, FinalResult, SentenceStamp
from streaming.engines import funasr_adapter, paraformer_offline
from streaming.engines.paraformer_offline_features import BatchedWavFrontend
from streaming.engines.paraformer_rows import SAMPLES_PER_UNIT
from streaming.engines.paraformer_speed import FSMN_CONVS, quantize_linear, swap_fsmn_convs
from streaming.engines.punctuation_model import Punctuator
from streaming.postprocess.finishing import FinalFinisher
from streaming.postprocess.punctuation import Punctuated, Segment, join_words

_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])")


def resolve_fsmn_conv(fsmn_conv: str, device: str) -> str:
    """`auto` → "native" on CUDA, "conv" elsewhere (bench/RESULTS.md): on an H200
    cuDNN's depthwise kernels cost 3x more when the batch size changes every step,
    as in a live server; the CPU has no cuDNN."""
    if fsmn_conv == "auto":
        fsmn_conv = "native" if str(device).startswith("cuda") else "conv"
    if fsmn_conv not in FSMN_CONVS:
        raise ValueError(f"fsmn_conv must be one of {FSMN_CONVS}, not {fsmn_conv!r}")
    return fsmn_conv


def prepare_models(*models: Any, device: str, quantize: str | None, fsmn_conv: str,
                   quantized: Sequence[Any] = ()) -> None:
    """Apply the speed options in place: int8 to the `quantized` models, the FSMN
    convolution variant to every model (each FunASR network here has FSMN blocks)."""
    if quantize is not None:
        quantize_linear(*quantized, mode=quantize, device=device)
    fsmn_conv = resolve_fsmn_conv(fsmn_conv, device)
    if fsmn_conv != "conv":
        for model in models:
            if model is not None:
                swap_fsmn_convs(funasr_adapter.network(model), fsmn_conv)


def _hotword_string(hotwords: Mapping[str, int]) -> str | None:
    # SeACo takes hotwords as one space-separated string (FunASR `hotword=` argument).
    words = [w.strip() for w in hotwords if w.strip()]
    return " ".join(words) if words else None


Recognise = Callable[[Sequence[FinalRequest]], list[tuple[str, list[list[int]]]]]


class ParaformerFinalPass:
    """`finalize` over a loaded offline AutoModel and an optional punctuation one.

    Without an offline model, `recognise_online` (the engine's online model over
    whole utterances) gives the words, and punctuation and ITN still apply."""

    def __init__(self, offline: Any | None, punc: Any | None = None,
                 recognise_online: Recognise | None = None, frontend: str = "batched",
                 inference: str = "batched") -> None:
        """`frontend="batched"`: the offline model's fbank for all utterances of a
        batch at once (paraformer_offline_features); "funasr": FunASR's, one by one.
        `inference="batched"`: a SeACo model's results read back once per batch
        (paraformer_offline); "funasr": FunASR's inference, utterance by utterance."""
        for model, role in ((offline, "offline"), (punc, "punctuation")):
            if model is not None:
                funasr_adapter.check_model(model, role)
        if offline is None and recognise_online is None:
            raise ValueError("a final pass needs an offline model or the online one")
        self.offline = offline
        for name, value in (("frontend", frontend), ("inference", inference)):
            if value not in ("batched", "funasr"):
                raise ValueError(f"{name} must be 'batched' or 'funasr', not {value!r}")
        if offline is not None:
            funasr_adapter.batch_invariant_timestamps(offline)
            if frontend == "batched":
                funasr_adapter.replace_frontend(offline, BatchedWavFrontend)
            if inference == "batched":
                paraformer_offline.install(offline)
        self.recognise_online = recognise_online
        self.punctuator = Punctuator(punc) if punc is not None else None
        self.finisher = FinalFinisher()

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        """Offline model over the whole batch (one forward per hotword set),
        punctuation over the whole batch, then ITN and hotwords per utterance."""
        with torch.inference_mode():
            recognised = self._recognise(batch)
            punctuated = self._punctuate([text for text, _ in recognised])
            return [self._finalize_one(req, *rec, punc)
                    for req, rec, punc in zip(batch, recognised, punctuated)]

    def _punctuate(self, texts: list[str]) -> list[Punctuated | None]:
        """Punctuation of every text that has words (None: no model or no words)."""
        out: list[Punctuated | None] = [None] * len(texts)
        if self.punctuator is None:
            return out
        has_words = [i for i, text in enumerate(texts) if text.split()]
        for i, punc in zip(has_words, self.punctuator.punctuate_many(
                [_CJK_GAP.sub("", texts[i]) for i in has_words])):
            out[i] = punc
        return out

    def _recognise(self, batch: Sequence[FinalRequest]) -> list[tuple[str, list[list[int]]]]:
        """Per utterance: (space-separated words, per-word [start, end] ms)."""
        if self.offline is None:
            return self.recognise_online(batch)
        results: list[tuple[str, list[list[int]]]] = [("", [])] * len(batch)
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

    def _finalize_one(self, req: FinalRequest, text: str, stamps: list[list[int]],
                      punctuated: Punctuated | None) -> FinalResult:
        words = text.split()
        if not words:
            return FinalResult(text="")
        if punctuated is not None:
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
