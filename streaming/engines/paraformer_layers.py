"""Batched chunk forwards of FunASR's streaming Paraformer layers (docs/design.md §6).

FunASR's `forward_chunk` methods are written for one stream: caches are dicts
whose tensors grow from nothing, the CIF predictor loops over samples in
Python and stores its state with batch-1 shapes. These functions run the same
arithmetic for a batch of streams, calling FunASR's own sub-modules (linear
layers, FSMN convolutions, norms, `forward_attention`) so the weights and the
maths stay FunASR's; only the cache handling is ours, and, where a key mask
hides part of a batch, the mask is added to the scores (`attend`: the same bits):

- every look-back K/V cache is a fixed-width buffer, valid entries at the
  right end (the newest), so streams with different fill stack into one
  tensor; a key mask hides the empty left part. A full buffer needs no mask,
  and then the operations are exactly FunASR's.
- the decoder's FSMN memory is kept as its last `kernel_size - 1` columns,
  which is all FunASR's growing cache ever contributes to the next call.
- the CIF integrate-and-fire walk is paraformer_cif's: its recurrence on the
  host, its sums on the device, in FunASR's float order.

The layers run FunASR's arithmetic with fewer operator calls than its methods
make: a step on a GPU waits on the host, not on the kernels (bench/RESULTS.md,
ninth session), and every call there costs host time. So dropout is not called
(the identity in inference), a layer's look-back keys and values are one tensor
joined by one `cat`, heads are views of one projection, and what is the same for
every layer (the decoder's FSMN window index) is computed once per step. Each
result is the same bits as FunASR's (tests/streaming/engines/test_paraformer_layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class KeyMask:
    """Which keys of [look-back buffer | this chunk] are real: `ones` (B, 1, T2) 1/0 as
    FunASR's `forward_attention` takes it, and `bias` (B, 1, 1, T2) 0/-inf to add to
    the scores instead, when every row has a real key (see `attend`)."""

    ones: Tensor
    bias: Tensor | None


def key_mask(
    fill: Tensor | None, width: int, frames_valid: Tensor | None, frames: int, *,
    dtype: torch.dtype = torch.float32, every_row_has_a_key: bool = False,
) -> KeyMask | None:
    """The mask over [look-back buffer | this chunk's keys], or None.

    `fill[b]` (a device tensor) entries at the right end of row b's buffer are
    real, None when every buffer is full; frames_valid (B, frames) marks real
    chunk frames (None: all). None when nothing is hidden, so full buffers run
    exactly FunASR's unmasked attention. FunASR's `forward_attention` turns 0
    into -inf before the softmax. `dtype`: the scores' (the bias is added to them).
    """
    if fill is None and frames_valid is None:
        return None
    known = fill if fill is not None else frames_valid
    batch, device = known.shape[0], known.device
    if fill is None:
        buffer = torch.ones(batch, width, dtype=torch.bool, device=device)
    else:
        empty = width - fill.clamp(max=width)
        buffer = torch.arange(width, device=device)[None, :] >= empty[:, None]
    if frames_valid is None:
        frames_valid = torch.ones(batch, frames, dtype=torch.bool, device=device)
    real = torch.cat((buffer, frames_valid), dim=1)
    bias = None
    if every_row_has_a_key:
        bias = torch.zeros(real.shape, dtype=dtype, device=device).masked_fill_(
            ~real, float("-inf"))[:, None, None, :]
    return KeyMask(real.unsqueeze(1).to(torch.float32), bias)


def attend(attn: torch.nn.Module, value: Tensor, scores: Tensor, mask: KeyMask | None) -> Tensor:
    """FunASR's `forward_attention`, with the key mask added as a bias where it can be.

    Adding -inf gives the scores FunASR's `masked_fill` gives, and adding 0 leaves a
    score as it is; FunASR's second `masked_fill`, after the softmax, only changes a
    row whose keys are all hidden (NaN there), which `bias` rules out. Two passes over
    the scores fewer: measured 2x faster than FunASR's masked softmax at 64 rows.
    """
    if mask is not None and mask.bias is None:
        return attn.forward_attention(value, scores, mask.ones)
    probs = torch.softmax(scores if mask is None else scores + mask.bias, dim=-1)
    x = torch.matmul(probs, value)  # FunASR's dropout here is the identity in inference
    return attn.linear_out(x.transpose(1, 2).reshape(value.shape[0], -1, attn.h * attn.d_k))


def attention_projection(layer: torch.nn.Module, x: Tensor) -> Tensor:
    """An encoder layer's (B, T, 3 * D) query/key/value projection of its input:
    the part of `forward_qkv` that depends on each frame alone."""
    return layer.self_attn.linear_q_k_v(layer.norm1(x) if layer.normalize_before else x)


def _heads(attn: torch.nn.Module, projection: Tensor, parts: int) -> Tensor:
    """(parts, B, H, T, d_k) views of a (B, T, parts * H * d_k) projection: FunASR's
    split, reshape and transpose of each part, in one view."""
    b, t, _ = projection.shape
    return projection.view(b, t, parts, attn.h, attn.d_k).permute(2, 0, 3, 1, 4)


def _join_look_back(kv: Tensor, new_k_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """[look-back | new] keys and values: FunASR's two `cat`s in one. kv (B, 2, H,
    W, d_k), new_k_v (2, B, H, T, d_k). Returns keys and values (B, H, W + T, d_k),
    each contiguous as FunASR's are (a matmul over another layout sums in another
    order), and both as one (B, 2, H, W + T, d_k) view to take the next look-back from."""
    joined = torch.cat((kv.transpose(0, 1), new_k_v), dim=3)
    keys, values = joined.unbind(0)
    return keys, values, joined.transpose(0, 1)


def _fsmn_memory(attn: torch.nn.Module, v: Tensor, frames_mask: Tensor | None) -> Tensor:
    """`MultiHeadedAttentionSANM.forward_fsmn` (its dropout is the identity here)."""
    if frames_mask is not None:  # FunASR's masked form, for padded final rows
        return attn.forward_fsmn(v, frames_mask)
    x = attn.fsmn_block(attn.pad_fn(v.transpose(1, 2))).transpose(1, 2)
    x += v
    return x


# FunASR's position-wise feed-forward classes whose forward `_feed_forward` repeats.
_FEED_FORWARDS = {"PositionwiseFeedForward": False, "PositionwiseFeedForwardDecoderSANM": True}


def _feed_forward(ff: torch.nn.Module, x: Tensor) -> Tensor:
    """FunASR's position-wise feed-forward without its dropout call (encoder: no
    norm; decoder: a norm before the bias-free second layer); any other class runs
    its own forward."""
    normed = _FEED_FORWARDS.get(type(ff).__name__)
    if normed is None:
        return ff(x)
    hidden = ff.activation(ff.w_1(x))
    return ff.w_2(ff.norm(hidden) if normed else hidden)


def encoder_layer_chunk(
    layer: torch.nn.Module, x: Tensor | None, kv: Tensor, mask: KeyMask | None, keep: int,
    frames_mask: Tensor | None = None, q_k_v: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """`EncoderLayerSANM.forward_chunk` for a batch; kv is (B, 2, H, W, d_k).

    Returns (output, new (B, 2, H, W, d_k) look-back, a view). Like FunASR, the
    newest `keep` frames (the chunk without its right context) enter the
    look-back. frames_mask (B, T) zeroes padded frames before the FSMN
    convolution, where FunASR's single stream has its zero padding. q_k_v: the
    layer's `attention_projection` of x when the caller has it (the first layer
    keeps its overlap frames' projection); x is then needed only for a residual.
    """
    residual = x
    attn = layer.self_attn
    if q_k_v is None:
        q_k_v = attention_projection(layer, x)
    heads = _heads(attn, q_k_v, 3)
    k_all, v_all, joined = _join_look_back(kv, heads[1:])
    width = kv.shape[3]
    fsmn_memory = _fsmn_memory(attn, q_k_v[:, :, 2 * attn.h * attn.d_k :], frames_mask)
    scores = torch.matmul(heads[0] * attn.d_k ** (-0.5), k_all.transpose(-2, -1))
    out = attend(attn, v_all, scores, mask) + fsmn_memory
    x = residual + out if layer.in_size == layer.size else out
    if not layer.normalize_before:
        x = layer.norm1(x)
    residual = x
    if layer.normalize_before:
        x = layer.norm2(x)
    x = residual + _feed_forward(layer.feed_forward, x)
    if not layer.normalize_before:
        x = layer.norm2(x)
    # The newest `width` of [buffer | first `keep` new keys]: a view, no second cat.
    return x, joined[:, :, :, keep : keep + width]


def cif_alphas(predictor: torch.nn.Module, hidden: Tensor) -> Tensor:
    """The per-frame weights of `CifPredictorV2.forward_chunk`, (B, T); the same
    operations give CifPredictorV3's token weights (before its mask)."""
    context = hidden.transpose(1, 2)
    output = torch.relu(predictor.cif_conv1d(predictor.pad(context))).transpose(1, 2)
    alphas = torch.sigmoid(predictor.cif_output(output))
    alphas = torch.nn.functional.relu(
        alphas * predictor.smooth_factor - predictor.noise_threshold
    )
    return alphas.squeeze(-1)


@dataclass
class DecoderTokens:
    """What every decoder layer's FSMN needs to know about the step's tokens,
    computed once per step: `started` (B, 1, 1) bool, FunASR's cache is not None
    (else the first call pads both sides), None when every row has started;
    `invalid` (B, N, 1) marks padding positions; `window` (B, D, K-1) gathers the
    newest K-1 columns after each row's n_tokens real ones."""

    started: Tensor | None
    invalid: Tensor
    window: Tensor


def decoder_tokens(started: Tensor | None, n_tokens: Tensor, positions: int, dim: int,
                   kernel: int) -> DecoderTokens:
    device = n_tokens.device
    invalid = (torch.arange(positions, device=device)[None, :] >= n_tokens[:, None])[:, :, None]
    index = n_tokens[:, None, None] + torch.arange(kernel - 1, device=device)
    return DecoderTokens(started, invalid, index.expand(-1, dim, -1))


def decoder_fsmn_chunk(
    fsmn: torch.nn.Module, inputs: Tensor, state: Tensor, tokens: DecoderTokens,
) -> tuple[Tensor, Tensor]:
    """`MultiHeadedAttentionSANMDecoder.forward` with a cache, for a batch.

    state (B, D, K-1): the last K-1 columns of FunASR's cache, which is all of it
    the next call reads. Padding is zeroed first so a centred first call sees
    zeros as FunASR does.
    """
    x = inputs.masked_fill(tokens.invalid, 0.0).transpose(1, 2)
    buf = torch.cat((state, x), dim=2)
    if tokens.started is not None:
        buf = torch.where(tokens.started, buf, fsmn.pad_fn(x))
    out = fsmn.fsmn_block(buf).transpose(1, 2) + inputs  # FunASR's dropout: the identity
    return out, torch.gather(buf, 2, tokens.window)


def cross_attention_chunk(
    attn: torch.nn.Module, x: Tensor, memory: Tensor, kv: Tensor, mask: KeyMask | None,
) -> tuple[Tensor, Tensor]:
    """`MultiHeadedAttentionCrossAtt.forward_chunk` for a batch; kv (B, 2, H, W, d_k).
    Returns (output, new (B, 2, H, W, d_k) look-back, a view)."""
    q_h = _heads(attn, attn.linear_q(x), 1)[0]
    k_all, v_all, joined = _join_look_back(kv, _heads(attn, attn.linear_k_v(memory), 2))
    scores = torch.matmul(q_h * attn.d_k ** (-0.5), k_all.transpose(-2, -1))
    return attend(attn, v_all, scores, mask), joined[:, :, :, -kv.shape[3] :]


def decoder_layer_chunk(
    layer: torch.nn.Module, x: Tensor, memory: Tensor, fsmn_args: tuple | None,
    kv: Tensor | None, mask: KeyMask | None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """`DecoderLayerSANM.forward_chunk` for a batch.

    fsmn_args = (state, DecoderTokens) for decoder_fsmn_chunk.
    Returns (output, new FSMN state or None, new (B, 2, H, W, d_k) look-back or None).
    """
    residual = x
    tgt = layer.norm1(x) if layer.normalize_before else x
    tgt = _feed_forward(layer.feed_forward, tgt)
    x, new_state, new_kv = tgt, None, None
    if layer.self_attn is not None:
        if layer.normalize_before:
            tgt = layer.norm2(tgt)
        out, new_state = decoder_fsmn_chunk(layer.self_attn, tgt, *fsmn_args)
        x = residual + out  # FunASR's dropout: the identity in inference
    if layer.src_attn is not None:
        residual = x
        if layer.normalize_before:
            x = layer.norm3(x)
        out, new_kv = cross_attention_chunk(layer.src_attn, x, memory, kv, mask)
        x = residual + out
    return x, new_state, new_kv
