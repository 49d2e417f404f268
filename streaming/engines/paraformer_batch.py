"""The online pass of streaming Paraformer, batched across streams (DESIGN §6).

Theory of operation. Every stream's audio is cut into strides exactly as
FunASR's `ParaformerStreaming.inference` cuts it (whole strides now, the rest
waits; on the last call one more, possibly short or empty, stride). One
`step` call runs in rounds: round r takes the r-th stride of every request
that has one (nearly always each request has exactly one). In a round,
features are extracted per stream (the fbank frontend keeps per-stream
look-back and is cheap), then rows are grouped by (encoder frames, chunk
size) and each group runs ONE encoder forward, one vectorised CIF, and one
decoder forward over its rows that fired tokens.

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

State lives on the model's device; per round only the features go in
(with a few ints per row: positions, buffer fill) and token ids come out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from streaming.engines.paraformer_layers import (
    cif_alphas,
    cif_fire,
    decoder_layer_chunk,
    encoder_layer_chunk,
    key_mask,
)

# FunASR's streaming frontend works in 60 ms units of 960 samples (chunk_size[1] * 960).
SAMPLES_PER_UNIT = 960


@dataclass
class StreamState:
    """One stream's online state; tensors on the model device."""

    chunk_size: tuple[int, int, int]
    frontend: dict  # WavFrontendOnline's per-stream cache (waveform/fbank/LFR look-back)
    prev_samples: np.ndarray  # audio of an unfinished stride
    start_idx: int  # positional offset: encoder frames consumed so far
    feats: Tensor  # (chunk[0] + chunk[2], D_in) overlap frames, already embedded
    enc_kv: Tensor  # (layers, 2, H, W, d_k) look-back buffer, newest at the right
    enc_fill: int  # valid entries at the right of enc_kv
    cif_alpha: Tensor  # () integrate carried to the next stride
    cif_hidden: Tensor  # (D,)
    dec_fsmn: Tensor  # (fsmn layers, D, K-1) decoder FSMN memory
    dec_started: bool  # the decoder ran once (FunASR's cache is no longer None)
    dec_kv: Tensor  # (att layers, 2, H, Wd, d_k) cross-attention look-back
    dec_fill: int


@dataclass
class _Row:
    """One stride of one stream within a round."""

    index: int  # request position
    state: StreamState
    speech: Tensor | None  # (T_new, D_in) features; None = tail (flush the overlap frames)
    is_final: bool

    @property
    def frames(self) -> int:
        ctx = self.state.chunk_size[0] + self.state.chunk_size[2]
        return ctx + (0 if self.speech is None else self.speech.shape[0])


class BatchedStreamingParaformer:
    """Runs FunASR's `ParaformerStreaming` modules on many streams per forward."""

    def __init__(
        self, model: torch.nn.Module, frontend: Any, *, encoder_look_back: int,
        decoder_look_back: int, device: str, dtype: torch.dtype = torch.float32,
    ) -> None:
        if encoder_look_back <= 0 or decoder_look_back <= 0:
            raise ValueError("batched streaming needs a positive look-back (FunASR -1/0 differ)")
        self.model = model
        self.frontend = frontend
        self.encoder_look_back = encoder_look_back
        self.decoder_look_back = decoder_look_back
        self.device = torch.device(device)
        self.dtype = dtype
        self.encoder_hook: Callable[[StreamState, Tensor], None] | None = None  # tests
        enc = model.encoder
        self._enc_layers = list(enc.encoders0) + list(enc.encoders)
        dec = model.decoder
        self._att_layers = list(dec.decoders[: dec.att_layer_num])
        extra = dec.num_blocks - dec.att_layer_num
        # FunASR runs decoders2 only when it has more than one block (its own test).
        self._fsmn_only_layers = list(dec.decoders2) if extra > 1 and dec.decoders2 else []
        self._plain_layers = list(dec.decoders3)
        self._skip_ids = {model.eos, model.sos, model.blank_id}

    # -- state -------------------------------------------------------------

    def new_state(self, chunk_size: Sequence[int]) -> StreamState:
        chunk = (int(chunk_size[0]), int(chunk_size[1]), int(chunk_size[2]))
        attn = self._enc_layers[-1].self_attn
        heads, d_k = attn.h, attn.d_k
        cross = self._att_layers[0].src_attn if self._att_layers else None
        dec_heads, dec_dk = (cross.h, cross.d_k) if cross is not None else (1, 1)
        fsmn_layers = self._att_layers + self._fsmn_only_layers
        kernel = fsmn_layers[0].self_attn.kernel_size if fsmn_layers else 1
        d_in = self._enc_layers[0].in_size
        dim = self.model.encoder.output_size()
        zeros = self._zeros
        return StreamState(
            chunk_size=chunk, frontend={}, prev_samples=np.zeros(0, np.float32), start_idx=0,
            feats=zeros(chunk[0] + chunk[2], d_in),
            enc_kv=zeros(len(self._enc_layers), 2, heads, self.encoder_look_back * chunk[1], d_k),
            enc_fill=0, cif_alpha=zeros(dtype=torch.float32),
            cif_hidden=zeros(dim, dtype=torch.float32),
            dec_fsmn=zeros(len(fsmn_layers), dim, kernel - 1), dec_started=False,
            dec_kv=zeros(len(self._att_layers), 2, dec_heads, self.decoder_look_back * chunk[1],
                         dec_dk),
            dec_fill=0,
        )

    def _zeros(self, *shape: int, dtype: torch.dtype | None = None) -> Tensor:
        return torch.zeros(shape, dtype=dtype or self.dtype, device=self.device)

    # -- step --------------------------------------------------------------

    def step(
        self, states: Sequence[StreamState], samples: Sequence[np.ndarray],
        is_last: Sequence[bool],
    ) -> list[list[int]]:
        """Feed audio to each stream; token ids committed per stream, in order.

        States are updated in place; a stream whose `is_last` is set holds
        whatever the final stride left (the caller starts a new one).
        """
        strides = [self._cut(s, a, last) for s, a, last in zip(states, samples, is_last)]
        ids: list[list[int]] = [[] for _ in states]
        for r in range(max((len(s) for s in strides), default=0)):
            rows = [
                self._row(i, states[i], strides[i][r], is_last[i] and r == len(strides[i]) - 1)
                for i in range(len(states)) if r < len(strides[i])
            ]
            for group in _group(rows):
                for row, row_ids in zip(group, self._run_group(group)):
                    ids[row.index] += row_ids
        return ids

    def _cut(self, state: StreamState, samples: np.ndarray, is_last: bool) -> list[np.ndarray]:
        # Same split as ParaformerStreaming.inference.
        stride = state.chunk_size[1] * SAMPLES_PER_UNIT
        audio = np.concatenate((state.prev_samples, np.asarray(samples, dtype=np.float32)))
        n = len(audio) // stride + int(is_last)
        rest = 0 if is_last else len(audio) % stride
        state.prev_samples = audio[len(audio) - rest :] if rest else np.zeros(0, np.float32)
        return [audio[i * stride : (i + 1) * stride] for i in range(n)]

    def _row(self, index: int, state: StreamState, audio: np.ndarray, is_final: bool) -> _Row:
        from funasr.utils.load_utils import extract_fbank

        if is_final and len(audio) < SAMPLES_PER_UNIT:
            # Too little audio for a frame: the encoder flushes its overlap frames.
            return _Row(index, state, None, is_final)
        speech, _ = extract_fbank(
            [torch.from_numpy(audio)], data_type="sound", frontend=self.frontend,
            cache=state.frontend, is_final=is_final,
        )
        return _Row(index, state, speech[0].to(self.device, self.dtype), is_final)

    def _run_group(self, rows: list[_Row]) -> list[list[int]]:
        enc, frames_valid = self._encode(rows)
        if self.encoder_hook is not None:
            for row, out in zip(rows, enc):
                self.encoder_hook(row.state, out[: row.frames])
        embeds, counts = self._predict(rows, enc, frames_valid)
        n_tokens = counts.tolist()  # the one sync: the decoder's shapes depend on it
        ids: list[list[int]] = [[] for _ in rows]
        firing = [i for i, n in enumerate(n_tokens) if n > 0]
        if not firing:  # FunASR skips the decoder (and leaves its caches) without tokens
            return ids
        pick = torch.tensor(firing, device=self.device)
        n_max = max(n_tokens)
        dec_ids = self._decode(
            [rows[i] for i in firing], enc.index_select(0, pick),
            embeds.index_select(0, pick)[:, :n_max], counts.index_select(0, pick),
            None if frames_valid is None else frames_valid.index_select(0, pick),
        ).tolist()
        for i, row_ids in zip(firing, dec_ids):
            ids[i] = [t for t in row_ids[: n_tokens[i]] if t not in self._skip_ids]
        return ids

    # -- encoder -------------------------------------------------------------

    def _encode(self, rows: list[_Row]) -> tuple[Tensor, Tensor | None]:
        """SANMEncoderChunkOpt.forward_chunk for the group.

        Returns the (B, T, D) output and, when final rows are shorter than the
        group, the (B, T) mask of their real frames (padding zeroed in the output).
        """
        states = [r.state for r in rows]
        chunk = states[0].chunk_size
        frames = max(r.frames for r in rows)
        x = torch.stack([_pad_frames(self._encoder_input(r), frames) for r in rows])
        frames_valid = None
        if any(r.frames < frames for r in rows):
            lengths = torch.tensor([r.frames for r in rows], device=self.device)
            frames_valid = torch.arange(frames, device=self.device)[None, :] < lengths[:, None]
        fsmn_mask = None if frames_valid is None else frames_valid.to(x.dtype)
        kv = torch.stack([s.enc_kv for s in states])
        width = kv.shape[4]
        mask = key_mask([s.enc_fill for s in states], width, frames_valid, frames, self.device)
        keep = frames - chunk[2]  # exact for non-final rows; final rows' caches are dropped
        new_kv = torch.empty_like(kv)
        for i, layer in enumerate(self._enc_layers):
            x, new_kv[:, i, 0], new_kv[:, i, 1] = encoder_layer_chunk(
                layer, x, kv[:, i], mask, keep, fsmn_mask)
        if self.model.encoder.normalize_before:
            x = self.model.encoder.after_norm(x)
        if fsmn_mask is not None:
            x = x * fsmn_mask[:, :, None]  # the CIF convolution must see zeros there
        for state, kv_row in zip(states, new_kv):
            state.enc_kv = kv_row
            state.enc_fill = min(width, state.enc_fill + keep)
        return x, frames_valid

    def _encoder_input(self, row: _Row) -> Tensor:
        """Scaled, position-encoded features behind the stream's overlap frames."""
        state = row.state
        if row.speech is None:
            return state.feats
        model = self.model
        speech = row.speech
        if model.normalize is not None:
            speech = model.normalize(speech[None], torch.tensor([speech.shape[0]]))[0][0]
        speech = speech * model.encoder.output_size() ** 0.5
        if model.encoder.embed is not None:
            speech = speech + self._positions(state.start_idx, speech.shape[0], speech.shape[1])
            state.start_idx += speech.shape[0]
        x = torch.cat((state.feats, speech), dim=0)
        state.feats = x[-state.feats.shape[0] :]
        return x

    def _positions(self, start: int, length: int, depth: int) -> Tensor:
        # StreamSinusoidalPositionEncoder.encode for positions start+1 … start+length,
        # in float32 whatever the model dtype (fp16 cannot count frames past 2048).
        positions = torch.arange(start + 1, start + length + 1, device=self.device)
        positions = positions.to(torch.float32)
        increment = torch.log(torch.tensor([10000.0], device=self.device)) / (depth / 2 - 1)
        inv = torch.exp(torch.arange(depth / 2, device=self.device) * (-increment))
        scaled = positions[:, None] * inv[None, :]
        return torch.cat((torch.sin(scaled), torch.cos(scaled)), dim=1).to(self.dtype)

    # -- predictor ---------------------------------------------------------

    def _predict(
        self, rows: list[_Row], enc: Tensor, frames_valid: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """CifPredictorV2.forward_chunk for the group: (fired embeddings, counts)."""
        predictor = self.model.predictor
        states = [r.state for r in rows]
        chunk = states[0].chunk_size
        alphas = cif_alphas(predictor, enc).float()
        alphas[:, : chunk[0]] = 0.0
        final = torch.tensor([r.is_final for r in rows], device=self.device)
        alphas[:, chunk[0] + chunk[1] :] *= final[:, None]  # FunASR keeps them only when final
        batch, frames = alphas.shape
        tail = torch.where(final, predictor.tail_threshold, 0.0).to(alphas.dtype)
        alphas = torch.cat(
            (torch.stack([s.cif_alpha for s in states])[:, None], alphas, tail[:, None]), dim=1)
        hidden = torch.cat((
            torch.stack([s.cif_hidden for s in states])[:, None], enc.float(),
            torch.zeros(batch, 1, enc.shape[2], device=self.device),
        ), dim=1)
        valid = torch.ones_like(alphas, dtype=torch.bool)
        if frames_valid is not None:  # skip padding: the tail follows the last real frame
            valid[:, 1:-1] = frames_valid
        valid[:, -1] = final
        embeds, counts, integrate, carried = cif_fire(predictor.threshold, hidden, alphas, valid)
        for state, a, h in zip(states, integrate, carried):
            state.cif_alpha, state.cif_hidden = a, h
        return embeds.to(enc.dtype), counts

    # -- decoder -------------------------------------------------------------

    def _decode(
        self, rows: list[_Row], memory: Tensor, embeds: Tensor, counts: Tensor,
        frames_valid: Tensor | None,
    ) -> Tensor:
        """ParaformerSANMDecoder.forward_chunk + greedy ids for rows with tokens: (B, N)."""
        decoder = self.model.decoder
        states = [r.state for r in rows]
        token_valid = (torch.arange(embeds.shape[1], device=self.device)[None, :]
                       < counts[:, None])[:, :, None]
        started = torch.tensor([s.dec_started for s in states], device=self.device)[:, None, None]
        fsmn = torch.stack([s.dec_fsmn for s in states])
        kv = torch.stack([s.dec_kv for s in states])
        width = kv.shape[4]
        mask = key_mask([s.dec_fill for s in states], width, frames_valid, memory.shape[1],
                        self.device)
        new_fsmn, new_kv = torch.empty_like(fsmn), torch.empty_like(kv)
        x = embeds
        for i, layer in enumerate(self._att_layers):
            x, new_fsmn[:, i], (new_kv[:, i, 0], new_kv[:, i, 1]) = decoder_layer_chunk(
                layer, x, memory, (fsmn[:, i], started, counts, token_valid), kv[:, i], mask)
        for j, layer in enumerate(self._fsmn_only_layers, start=len(self._att_layers)):
            x, new_fsmn[:, j], _ = decoder_layer_chunk(
                layer, x, memory, (fsmn[:, j], started, counts, token_valid), None, None)
        for layer in self._plain_layers:
            x = layer.forward_chunk(x, memory)[0]
        if decoder.normalize_before:
            x = decoder.after_norm(x)
        if decoder.output_layer is not None:
            x = decoder.output_layer(x)
        for state, fsmn_row, kv_row in zip(states, new_fsmn, new_kv):
            state.dec_fsmn, state.dec_kv, state.dec_started = fsmn_row, kv_row, True
            state.dec_fill = min(width, state.dec_fill + memory.shape[1])
        # log_softmax as FunASR does: argmax over its rounded values, ties included.
        return torch.log_softmax(x.float(), dim=-1).argmax(dim=-1)


def _group(rows: list[_Row]) -> list[list[_Row]]:
    """Rows that can share one forward.

    Non-final rows need the same frame count (it decides what enters their
    look-back); a final row's caches are dropped after it, so it joins the
    widest group of its chunk settings that is at least as wide, padded and
    masked, instead of running alone. Finals wider than every group (or with
    none to join) share a padded group of their own.
    """
    exact: dict[tuple, list[_Row]] = {}
    finals: list[_Row] = []
    for row in rows:
        if row.is_final:
            finals.append(row)
        else:
            exact.setdefault((row.frames, row.state.chunk_size), []).append(row)
    spare: dict[tuple, list[_Row]] = {}
    for row in finals:
        fits = [k for k in exact if k[1] == row.state.chunk_size and k[0] >= row.frames]
        if fits:
            exact[max(fits)].append(row)
        else:
            spare.setdefault(row.state.chunk_size, []).append(row)
    return list(exact.values()) + list(spare.values())


def _pad_frames(x: Tensor, frames: int) -> Tensor:
    return torch.nn.functional.pad(x, (0, 0, 0, frames - x.shape[0])) if x.shape[0] < frames else x
