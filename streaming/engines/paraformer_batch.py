"""The online pass of streaming Paraformer, batched across streams (docs/design.md §6).

Theory of operation. Every stream's audio is cut into strides exactly as
FunASR's `ParaformerStreaming.inference` cuts it (whole strides now, the rest
waits; on the last call one more, possibly short or empty, stride). One
`step` call runs in rounds: round r takes the r-th stride of every request
that has one (nearly always each request has exactly one). In a round,
features are extracted for all its rows in one frontend call, then rows are
grouped by (encoder frames, chunk size) and each group runs ONE encoder
forward, one vectorised CIF, and one decoder forward over its rows that
fired tokens.

Why this grouping. Streams differ where it matters in two ways. Look-back
fill (empty, 15, 30 … 40 frames while a stream warms up): caches are
fixed-width buffers with a key mask, so warming-up and steady streams share a
forward, and a full batch needs no mask at all. Frame count: every non-final
stride has the same (overlap + 10 frames); only a stream's last stride is
shorter (a short tail, or just the overlap frames when the tail is empty).
A final row's caches are dropped afterwards, so it is padded into the main
group with frame masks (FSMN input, attention keys, CIF, decoder memory)
instead of running as a batch of one: measured on the real-size model on
2 CPU cores, a batch-1 forward costs ~240 ms against ~77 ms per extra row in
a batch of 32, and with ~5 s utterances a tick of 32 streams has ~4 finals.
Chunk settings ([5,10,5] vs [0,10,5]) change the frame count and the
look-back stride, so they form separate groups.

State lives on the model's device in one slot pool per chunk setting
(paraformer_pool): a group gathers its rows by slot index and writes them
back in place; per round only the features and the slot numbers go in and
token ids come out. The overlap frames that FunASR feeds into the encoder
again at the next stride are kept as the first layer's attention projection,
so a stride projects only its new frames. With `bucket_batches`, a group (and
its decoder subset, and the decoder's token axis) is padded to a few fixed
sizes by repeating its first row, whose repeated results are never written
back: the kernels see few shapes (cuDNN plans its depthwise FSMN convolutions
per shape on GPU), and a repeated real row keeps steady batches free of
attention masks. With `cuda_graphs` (CUDA only; buckets implied), such steady
groups run the encoder's and the decoder's layer stacks as CUDA graphs, one per
shape (paraformer_graphs); every other group runs the same stacks eagerly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from streaming.engines.paraformer_cif import cif_fire
from streaming.engines.paraformer_graphs import PoolGraphs
from streaming.engines.paraformer_layers import (
    KeyMask,
    attention_projection,
    cif_alphas,
    decoder_layer_chunk,
    decoder_tokens,
    encoder_layer_chunk,
    key_mask,
)
from streaming.engines.paraformer_pool import StatePool, StreamHandle, bucket_size, to_device
from streaming.engines.paraformer_rows import (
    SAMPLES_PER_UNIT,
    Row,
    all_have_frames,
    cut_strides,
    group_rows,
    pad_frames,
    valid_mask,
)


class BatchedStreamingParaformer:
    """Runs FunASR's `ParaformerStreaming` modules on many streams per forward.

    `frontend` has `new_state()` and `extract(states, audios, is_final)`
    (paraformer_frontend). `initial_slots` is each pool's first capacity.
    """

    def __init__(
        self, model: torch.nn.Module, frontend: Any, *, encoder_look_back: int,
        decoder_look_back: int, device: str, dtype: torch.dtype = torch.float32,
        bucket_batches: bool = False, initial_slots: int = 8, cuda_graphs: bool = False,
    ) -> None:
        if encoder_look_back <= 0 or decoder_look_back <= 0:
            raise ValueError("batched streaming needs a positive look-back (FunASR -1/0 differ)")
        self.model = model
        self.frontend = frontend
        self.encoder_look_back = encoder_look_back
        self.decoder_look_back = decoder_look_back
        self.device = torch.device(device)
        self.dtype = dtype
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        # Graphs are per shape: with them, batch sizes are bucketed to keep shapes few.
        self.bucket_batches = bucket_batches or cuda_graphs
        self.encoder_graphs = self.decoder_graphs = None
        if cuda_graphs:
            self.encoder_graphs = PoolGraphs(lambda pooled, outs, *args: self._encoder_layers(
                pooled["enc_kv"], *args, new_kv=outs and outs["enc_kv"]))
            self.decoder_graphs = PoolGraphs(lambda pooled, outs, *args: self._decoder_layers(
                pooled["dec_fsmn"], pooled["dec_kv"], *args, new_fsmn=outs and outs["dec_fsmn"],
                new_kv=outs and outs["dec_kv"]), max_graphs=128)
        self.initial_slots = initial_slots
        self.pools: dict[tuple[int, int, int], StatePool] = {}
        enc = model.encoder
        self._enc_layers = list(enc.encoders0) + list(enc.encoders)
        # The first layer adds no residual when it changes the width (every FunASR
        # model: LFR features in, d_model out): its overlap frames' input is then
        # only needed through their attention projection, which is what we keep.
        first = self._enc_layers[0]
        self._keep_overlap_input = first.in_size == first.size
        dec = model.decoder
        self._att_layers = list(dec.decoders[: dec.att_layer_num])
        extra = dec.num_blocks - dec.att_layer_num
        # FunASR runs decoders2 only when it has more than one block (its own test).
        self._fsmn_only_layers = list(dec.decoders2) if extra > 1 and dec.decoders2 else []
        self._plain_layers = list(dec.decoders3)
        self._skip_ids = {model.eos, model.sos, model.blank_id}
        self._inv_timescales: Tensor | None = None

    # -- streams and their pools ---------------------------------------------

    def new_stream(self, chunk_size: Sequence[int]) -> StreamHandle:
        """A handle without tensors; its slot is taken at its first step."""
        return StreamHandle(chunk_size=(int(chunk_size[0]), int(chunk_size[1]),
                                        int(chunk_size[2])))

    def row_state(self, handle: StreamHandle) -> dict[str, Tensor]:
        """Views of a stepped stream's state in its pool (for inspection)."""
        if handle.slot is None:
            raise ValueError("the stream holds no slot (not stepped yet, or ended)")
        pool = self.pools[handle.chunk_size]
        return {name: rows[handle.slot] for name, rows in pool.rows.items()}

    def _pool(self, chunk: tuple[int, int, int]) -> StatePool:
        pool = self.pools.get(chunk)
        if pool is None:
            pool = self.pools[chunk] = StatePool(
                self._row_shapes(chunk), self.device, self.initial_slots,
                initial={"overlap_qkv": self._silent_overlap(chunk)})
        return pool

    def _silent_overlap(self, chunk: tuple[int, int, int]) -> Tensor:
        # FunASR's overlap frames start as zeros; we keep their projection.
        first = self._enc_layers[0]
        zeros = torch.zeros(1, chunk[0] + chunk[2], first.in_size, dtype=self.dtype,
                            device=self.device)
        return attention_projection(first, zeros)[0]

    def _row_shapes(self, chunk: tuple[int, int, int]) -> dict:
        attn = self._enc_layers[-1].self_attn
        cross = self._att_layers[0].src_attn if self._att_layers else None
        dec_heads, dec_dk = (cross.h, cross.d_k) if cross is not None else (1, 1)
        fsmn_layers = self._att_layers + self._fsmn_only_layers
        kernel = fsmn_layers[0].self_attn.kernel_size if fsmn_layers else 1
        dim = self.model.encoder.output_size()
        enc_width, dec_width = (self.encoder_look_back * chunk[1],
                                self.decoder_look_back * chunk[1])
        long, half = torch.int64, self.dtype
        first, overlap = self._enc_layers[0], chunk[0] + chunk[2]
        inputs = {"feats": ((overlap, first.in_size), half)} if self._keep_overlap_input else {}
        return {
            "start_idx": ((), long),  # positional offset: encoder frames consumed so far
            # the overlap frames, as the first layer's attention projection (and as input
            # only where that layer adds them back as a residual)
            "overlap_qkv": ((overlap, first.self_attn.linear_q_k_v.out_features), half),
            **inputs,
            "enc_kv": ((len(self._enc_layers), 2, attn.h, enc_width, attn.d_k), half),
            "enc_fill": ((), long),  # valid look-back entries, newest at the right
            "cif_alpha": ((), torch.float32),  # integrate carried to the next stride
            "cif_hidden": ((dim,), torch.float32),
            "dec_fsmn": ((len(fsmn_layers), dim, kernel - 1), half),  # FSMN memory
            "dec_started": ((), torch.bool),  # FunASR's decoder cache is no longer None
            "dec_kv": ((len(self._att_layers), 2, dec_heads, dec_width, dec_dk), half),
            "dec_fill": ((), long),
        }

    def _acquire(self, handles: Sequence[StreamHandle]) -> None:
        for pool in self.pools.values():
            pool.take_back_dropped()
        new: dict[tuple[int, int, int], list[StreamHandle]] = {}
        for handle in handles:
            if handle.slot is None:
                new.setdefault(handle.chunk_size, []).append(handle)
        for chunk, fresh in new.items():
            self._pool(chunk).acquire(fresh)
            for handle in fresh:
                handle.frontend = self.frontend.new_state()

    def _release(self, handle: StreamHandle) -> None:
        # FunASR re-initialises after is_last; the handle would start afresh.
        self.pools[handle.chunk_size].release(handle)
        handle.frontend, handle.prev_samples = None, np.zeros(0, np.float32)

    # -- step --------------------------------------------------------------

    def step(
        self, handles: Sequence[StreamHandle], samples: Sequence[np.ndarray],
        is_last: Sequence[bool],
    ) -> list[list[int]]:
        """Feed audio to each stream; token ids committed per stream, in order.

        A stream whose `is_last` is set gives its slot back (the caller
        starts a new one).
        """
        self._acquire(handles)
        strides = [cut_strides(h, a, last) for h, a, last in zip(handles, samples, is_last)]
        ids: list[list[int]] = [[] for _ in handles]
        for r in range(max((len(s) for s in strides), default=0)):
            live = [i for i in range(len(handles)) if r < len(strides[i])]
            finals = [is_last[i] and r == len(strides[i]) - 1 for i in live]
            speech = self._features(
                [handles[i].frontend for i in live], [strides[i][r] for i in live], finals)
            rows = [Row(i, handles[i], s, f) for i, s, f in zip(live, speech, finals)]
            for group in group_rows(rows):
                for row, row_ids in zip(group, self._run_group(group)):
                    ids[row.index] += row_ids
        for handle, last in zip(handles, is_last):
            if last:
                self._release(handle)
        return ids

    def _features(
        self, states: list, audios: list[np.ndarray], finals: list[bool],
    ) -> list[Tensor | None]:
        """One frontend call for the round. Like `ParaformerStreaming.inference`,
        a final stride under one 60 ms unit gets no features (None): the encoder
        then only flushes its overlap frames."""
        take = [k for k, (a, f) in enumerate(zip(audios, finals))
                if not (f and len(a) < SAMPLES_PER_UNIT)]
        out: list[Tensor | None] = [None] * len(audios)
        extracted = self.frontend.extract(
            [states[k] for k in take], [audios[k] for k in take], [finals[k] for k in take])
        for k, feats in zip(take, extracted):
            out[k] = feats
        return out

    def _padded(self, n: int) -> list[int]:
        """Row positions of a batch of n: with buckets, the first row repeated to the size."""
        return list(range(n)) + [0] * ((bucket_size(n) if self.bucket_batches else n) - n)

    def _run_group(self, rows: list[Row]) -> list[list[int]]:
        n = len(rows)
        batch = [rows[i] for i in self._padded(n)]
        pool = self.pools[rows[0].handle.chunk_size]
        slots = [r.handle.slot for r in batch]
        # Copies first: after kernels, one would wait for them (paraformer_pool.to_device).
        index, final = to_device(
            self.device, np.array(slots), np.array([r.is_final for r in batch]))
        has_frames = all_have_frames(batch)
        enc, frames_valid = self._encode(batch, n, pool, slots, index, has_frames)
        embeds, host_counts = self._predict(batch, n, pool, index, final, enc)
        n_tokens = host_counts.tolist()[:n]  # the decoder's shapes depend on it
        ids: list[list[int]] = [[] for _ in rows]
        firing = [i for i, k in enumerate(n_tokens) if k > 0]
        if not firing:  # FunASR skips the decoder (and leaves its caches) without tokens
            return ids
        picked = [firing[i] for i in self._padded(len(firing))]
        dec_slots = [slots[i] for i in picked]
        pick, dec_index, dec_counts = to_device(
            self.device, np.array(picked), np.array(dec_slots), host_counts[picked])
        n_max = max(n_tokens)
        if self.bucket_batches:  # padding tokens are masked like a shorter row's
            n_max = min(bucket_size(n_max), embeds.shape[1])
        dec_ids = self._decode(
            pool, dec_slots, dec_index, len(firing), enc.index_select(0, pick),
            embeds.index_select(0, pick)[:, :n_max], dec_counts,
            None if frames_valid is None else frames_valid.index_select(0, pick),
            has_frames,
        ).tolist()
        for i, row_ids in zip(firing, dec_ids):
            ids[i] = [t for t in row_ids[: n_tokens[i]] if t not in self._skip_ids]
        return ids

    # -- encoder -------------------------------------------------------------

    def _encode(
        self, batch: list[Row], n: int, pool: StatePool, slots: list[int], index: Tensor,
        has_frames: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """SANMEncoderChunkOpt.forward_chunk for the group; the first n rows are written back.
        `has_frames`: every row has a real frame (`all_have_frames`).

        Returns the (B, T, D) output and, when final rows are shorter than the
        group, the (B, T) mask of their real frames (padding zeroed in the output).
        """
        chunk = batch[0].handle.chunk_size
        overlap = chunk[0] + chunk[2]
        names = ("overlap_qkv", "start_idx", "enc_fill")
        state = pool.gather(index, names + (("feats",) if self._keep_overlap_input else ()))
        speech, start_idx = self._encoder_input(batch, state["start_idx"])
        # Only the new frames are projected: the overlap frames' projection is kept.
        q_k_v, x = state["overlap_qkv"], state.get("feats")
        if speech is not None:
            q_k_v = torch.cat((q_k_v, attention_projection(self._enc_layers[0], speech)), dim=1)
            x = None if x is None else torch.cat((x, speech), dim=1)
        written = {"overlap_qkv": q_k_v[:n, q_k_v.shape[1] - overlap :]}
        if x is not None:
            written["feats"] = x[:n, x.shape[1] - overlap :]
        frames = q_k_v.shape[1]
        frames_valid = valid_mask([r.frames for r in batch], frames, self.device)
        fill, rows = state["enc_fill"], pool.rows["enc_kv"]
        width = rows.shape[4]
        host_fill = pool.enc_fill[slots]
        keep = frames - chunk[2]  # exact for non-final rows; final rows' caches are dropped
        if self.encoder_graphs and frames_valid is None and host_fill.min() >= width:
            x, new_kv = self.encoder_graphs(pool, ("enc_kv",), index, (q_k_v, x), (keep,))
        else:
            mask = key_mask(None if host_fill.min() >= width else fill, width, frames_valid,
                            frames, dtype=q_k_v.dtype, every_row_has_a_key=has_frames)
            fsmn_mask = None if frames_valid is None else frames_valid.to(q_k_v.dtype)
            kv = pool.gather(index, ("enc_kv",))["enc_kv"]
            x, new_kv = self._encoder_layers(kv, q_k_v, x, keep, mask, fsmn_mask)
            if fsmn_mask is not None:
                x = x * fsmn_mask[:, :, None]  # the CIF convolution must see zeros there
        pool.scatter(index[:n], {
            **written, "start_idx": start_idx[:n], "enc_kv": new_kv[:n],
            "enc_fill": (fill[:n] + keep).clamp(max=width),
        })
        pool.enc_fill[slots[:n]] = np.minimum(width, host_fill[:n] + keep)
        return x, frames_valid

    def _encoder_layers(
        self, kv: Tensor, q_k_v: Tensor, x: Tensor | None, keep: int,
        mask: KeyMask | None = None, fsmn_mask: Tensor | None = None,
        new_kv: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The encoder's layers and final norm over gathered look-back kv:
        (output, new look-back, written to `new_kv` when given)."""
        # Each layer's new look-back is copied out at once: its joined keys are freed.
        new_kv = torch.empty_like(kv) if new_kv is None else new_kv
        layers = zip(self._enc_layers, kv.unbind(1), new_kv.unbind(1))
        for i, (layer, layer_kv, layer_new_kv) in enumerate(layers):
            x, window = encoder_layer_chunk(
                layer, x, layer_kv, mask, keep, fsmn_mask, q_k_v if i == 0 else None)
            layer_new_kv.copy_(window)
        if self.model.encoder.normalize_before:
            x = self.model.encoder.after_norm(x)
        return x, new_kv

    def _encoder_input(
        self, batch: list[Row], start_idx: Tensor,
    ) -> tuple[Tensor | None, Tensor]:
        """This stride's scaled, position-encoded features, (B, T_new, D_in), and the
        new positional offsets; None when every row is a flushing tail. Rows
        without features (a flushing tail) get zero frames.
        """
        lengths = [0 if r.speech is None else r.speech.shape[0] for r in batch]
        length = max(lengths)
        if length == 0:
            return None, start_idx
        zeros = torch.zeros(length, self._enc_layers[0].in_size, dtype=self.dtype,
                            device=self.device)
        speech = torch.stack([pad_frames(r.speech, length) if r.speech is not None
                              else zeros for r in batch])
        model = self.model
        if model.normalize is not None:
            speech = model.normalize(speech, torch.tensor(lengths))[0]
        speech = speech * model.encoder.output_size() ** 0.5
        valid = valid_mask(lengths, length, self.device)
        if model.encoder.embed is not None:
            speech = speech + self._positions(start_idx, length, speech.shape[2])
            added = length if valid is None else torch.tensor(lengths, device=self.device)
            start_idx = start_idx + added
        if valid is not None:
            speech = torch.where(valid[:, :, None], speech, 0.0)
        return speech, start_idx

    def _positions(self, start: Tensor, length: int, depth: int) -> Tensor:
        # StreamSinusoidalPositionEncoder.encode for positions start+1 … start+length,
        # in float32 whatever the model dtype (fp16 cannot count frames past 2048).
        if self._inv_timescales is None or self._inv_timescales.shape[0] * 2 != depth:
            increment = torch.log(torch.tensor([10000.0], device=self.device)) / (depth / 2 - 1)
            self._inv_timescales = torch.exp(
                torch.arange(depth / 2, device=self.device) * (-increment))
        steps = torch.arange(1, length + 1, device=self.device)
        positions = (start[:, None] + steps[None, :]).to(torch.float32)
        scaled = positions[:, :, None] * self._inv_timescales
        return torch.cat((torch.sin(scaled), torch.cos(scaled)), dim=2).to(self.dtype)

    # -- predictor ---------------------------------------------------------

    def _predict(
        self, batch: list[Row], n: int, pool: StatePool, index: Tensor, final: Tensor,
        enc: Tensor,
    ) -> tuple[Tensor, np.ndarray]:
        """CifPredictorV2.forward_chunk for the group: (fired embeddings, counts on the host)."""
        predictor = self.model.predictor
        chunk = batch[0].handle.chunk_size
        state = pool.gather(index, ("cif_alpha", "cif_hidden"))
        alphas = cif_alphas(predictor, enc).float()
        alphas[:, : chunk[0]] = 0.0
        batch_size = alphas.shape[0]
        alphas[:, chunk[0] + chunk[1] :] *= final[:, None]  # FunASR keeps them only when final
        tail = torch.where(final, predictor.tail_threshold, 0.0).to(alphas.dtype)
        alphas = torch.cat((state["cif_alpha"][:, None], alphas, tail[:, None]), dim=1)
        hidden = torch.cat((
            state["cif_hidden"][:, None], enc.float(),
            torch.zeros(batch_size, 1, enc.shape[2], device=self.device),
        ), dim=1)
        valid = np.ones(alphas.shape, bool)  # the walk runs on the host (paraformer_cif)
        # skip padding (rows shorter than the group): the tail follows the last real frame
        lengths = np.array([r.frames for r in batch])
        valid[:, 1:-1] = np.arange(enc.shape[1])[None, :] < lengths[:, None]
        valid[:, -1] = [r.is_final for r in batch]
        embeds, counts, integrate, carried = cif_fire(
            predictor.threshold, hidden, alphas.cpu().numpy(), valid)
        pool.scatter(index[:n], {"cif_alpha": integrate[:n], "cif_hidden": carried[:n]})
        return embeds.to(enc.dtype), counts

    # -- decoder -------------------------------------------------------------

    def _decode(
        self, pool: StatePool, slots: list[int], index: Tensor, n: int, memory: Tensor,
        embeds: Tensor, counts: Tensor, frames_valid: Tensor | None, has_frames: bool,
    ) -> Tensor:
        """ParaformerSANMDecoder.forward_chunk + greedy ids for rows with tokens: (B, N).

        The first n rows are real (their state is written back), the rest repeat row 0.
        """
        fill, width = pool.gather(index, ("dec_fill",))["dec_fill"], pool.rows["dec_kv"].shape[4]
        host_fill = pool.dec_fill[slots]
        if self.decoder_graphs and frames_valid is None and host_fill.min() >= width:
            ids, new_fsmn, new_kv = self.decoder_graphs(  # steady rows: no mask, all started
                pool, ("dec_fsmn", "dec_kv"), index, (memory, embeds, counts))
        else:
            # A row has started once it has decoded (its look-back filled): then every
            # FSMN reads its cache, and none needs FunASR's first-call padding.
            started = None if host_fill.min() > 0 else pool.gather(
                index, ("dec_started",))["dec_started"][:, None, None]
            mask = key_mask(None if host_fill.min() >= width else fill, width, frames_valid,
                            memory.shape[1], dtype=memory.dtype, every_row_has_a_key=has_frames)
            cached = pool.gather(index, ("dec_fsmn", "dec_kv"))
            ids, new_fsmn, new_kv = self._decoder_layers(
                cached["dec_fsmn"], cached["dec_kv"], memory, embeds, counts, started, mask)
        pool.scatter(index[:n], {
            "dec_fsmn": new_fsmn[:n], "dec_kv": new_kv[:n],
            "dec_fill": (fill[:n] + memory.shape[1]).clamp(max=width),
        })
        pool.rows["dec_started"].index_fill_(0, index[:n], True)
        pool.dec_fill[slots[:n]] = np.minimum(width, host_fill[:n] + memory.shape[1])
        return ids

    def _decoder_layers(
        self, fsmn: Tensor, kv: Tensor, memory: Tensor, embeds: Tensor, counts: Tensor,
        started: Tensor | None = None, mask: KeyMask | None = None,
        new_fsmn: Tensor | None = None, new_kv: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The decoder's layers, output layer and greedy ids over gathered caches:
        (ids (B, N), new FSMN states, new look-back; written to new_* when given)."""
        decoder = self.model.decoder
        tokens = decoder_tokens(started, counts, embeds.shape[1], fsmn.shape[2], fsmn.shape[3] + 1)
        new_fsmn = torch.empty_like(fsmn) if new_fsmn is None else new_fsmn
        new_kv = torch.empty_like(kv) if new_kv is None else new_kv
        x = embeds
        fsmn_rows, new_fsmn_rows = fsmn.unbind(1), new_fsmn.unbind(1)
        layers = zip(self._att_layers, fsmn_rows, new_fsmn_rows, kv.unbind(1), new_kv.unbind(1))
        for layer, layer_fsmn, layer_new_fsmn, layer_kv, layer_new_kv in layers:
            x, fsmn_state, window = decoder_layer_chunk(
                layer, x, memory, (layer_fsmn, tokens), layer_kv, mask)
            layer_new_fsmn.copy_(fsmn_state)
            layer_new_kv.copy_(window)
        skip = len(self._att_layers)
        for layer, layer_fsmn, layer_new_fsmn in zip(
                self._fsmn_only_layers, fsmn_rows[skip:], new_fsmn_rows[skip:]):
            x, fsmn_state, _ = decoder_layer_chunk(
                layer, x, memory, (layer_fsmn, tokens), None, None)
            layer_new_fsmn.copy_(fsmn_state)
        for layer in self._plain_layers:
            x = layer.forward_chunk(x, memory)[0]
        if decoder.normalize_before:
            x = decoder.after_norm(x)
        if decoder.output_layer is not None:
            x = decoder.output_layer(x)
        # log_softmax as FunASR does: argmax over its rounded values, ties included.
        return torch.log_softmax(x.float(), dim=-1).argmax(dim=-1), new_fsmn, new_kv
