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

Final pass (paraformer_final): the offline model on the whole utterance
(SeACo hotwords forwarded natively), then punctuation → ITN → hotword
correction. It can also run in a process of its own (server/final_process.py).
FunASR objects are reached only through `funasr_adapter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from streaming.engine import (
    ChunkRequest,
    ChunkResult,
    FinalRequest,
    FinalResult,
    StreamOptions,
)
from streaming.engines import funasr_adapter
from streaming.engines.paraformer_batch import BatchedStreamingParaformer
from streaming.engines.paraformer_features import BatchedOnlineFrontend
from streaming.engines.paraformer_final import ParaformerFinalPass, prepare_models
from streaming.engines.paraformer_frontend import FunasrOnlineFrontend
from streaming.engines.paraformer_pool import StreamHandle
from streaming.engines.paraformer_rows import SAMPLES_PER_UNIT
from streaming.engines.paraformer_speed import online_dtype

# Settings of FunASR's streaming demo (and its runtime server).
ENCODER_CHUNK_LOOK_BACK = 4
DECODER_CHUNK_LOOK_BACK = 1



@dataclass
class ParaformerStream:
    """Opaque per-utterance state: the batched runner's handle plus the stream's options."""

    online: StreamHandle
    options: StreamOptions


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
    `cuda_graphs` replays the online encoder's and decoder's layers as CUDA graphs,
    one per bucketed batch shape (paraformer_graphs; implies `bucket_batches`; CUDA only).
    """

    name = "paraformer"

    def __init__(
        self, online: Any, offline: Any | None = None, punc: Any | None = None,
        device: str = "cpu", *, dtype: str | None = None, quantize: str | None = None,
        bucket_batches: bool | None = None, frontend: str = "batched",
        fsmn_conv: str = "auto", cuda_graphs: bool = False,
    ) -> None:
        funasr_adapter.check_funasr()
        funasr_adapter.check_model(online, "online")
        self.online = online
        self.offline = offline
        self.device = device
        prepare_models(online, offline, punc, device=device, quantize=quantize,
                       fsmn_conv=fsmn_conv, quantized=(online, offline))
        self.model = funasr_adapter.network(online)  # the ParaformerStreaming nn.Module
        self.final_pass = ParaformerFinalPass(offline, punc, self._recognise_online, frontend)
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
            bucket_batches=bucket_batches, cuda_graphs=cuda_graphs,
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
        """The offline model (or, without one, the online model over the whole
        utterance), then punctuation, ITN and hotwords (paraformer_final)."""
        return self.final_pass.finalize(batch)

    def _recognise_online(self, batch: Sequence[FinalRequest]) -> list[tuple[str, list]]:
        streams = [ChunkRequest(self.new_stream(r.options), r.samples, True) for r in batch]
        return [(" ".join(res.committed).replace("@@ ", ""), []) for res in self.step(streams)]
