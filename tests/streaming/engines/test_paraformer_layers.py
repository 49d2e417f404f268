"""The batched layers' attention with a key mask against FunASR's own (paraformer_layers).

Streams that are warming up, and finals padded into a wider group, hide some
attention keys. `attend` adds the mask to the scores as a 0/-inf bias where
FunASR fills them and zeroes the softmax after: the results must be the same
bits, and a row whose keys are all hidden must get FunASR's result, not NaN.
"""

from __future__ import annotations

import pytest
import torch

from streaming.engines.paraformer_layers import (
    attend,
    decoder_layer_chunk,
    decoder_tokens,
    encoder_layer_chunk,
    key_mask,
)

BATCH, FRAMES, WIDTH = 6, 20, 40


@pytest.fixture(scope="module")
def attentions(paraformer_engine):
    model = paraformer_engine.online.model
    return {"encoder": model.encoder.encoders[0].self_attn,
            "cross": model.decoder.decoders[0].src_attn}


def scores_and_values(attn, generator):
    shape = (BATCH, attn.h, FRAMES, WIDTH + FRAMES)
    scores = torch.randn(shape, generator=generator) * 4
    values = torch.randn(BATCH, attn.h, WIDTH + FRAMES, attn.d_k, generator=generator)
    return scores, values


@pytest.mark.parametrize("kind", ["encoder", "cross"])
def test_attention_with_a_bias_is_bit_for_bit_funasr_masked_attention(attentions, kind):
    attn = attentions[kind]
    generator = torch.Generator().manual_seed(7)
    fill = torch.tensor([0, 10, 25, 39, 40, 40])  # warming-up look-back buffers
    lengths = torch.tensor([20, 20, 3, 20, 1, 12])  # finals padded to the group
    frames_valid = torch.arange(FRAMES)[None, :] < lengths[:, None]
    mask = key_mask(fill, WIDTH, frames_valid, FRAMES, every_row_has_a_key=True)
    assert mask is not None and mask.bias is not None
    scores, values = scores_and_values(attn, generator)
    with torch.inference_mode():
        mine = attend(attn, values, scores, mask)
        funasr = attn.forward_attention(values, scores, mask.ones)
    assert torch.equal(mine, funasr)


def test_a_row_without_real_keys_gets_funasr_result_not_nan(attentions):
    attn = attentions["encoder"]
    generator = torch.Generator().manual_seed(8)
    fill = torch.tensor([0, 40, 40, 40, 40, 40])
    frames_valid = torch.ones(BATCH, FRAMES, dtype=torch.bool)
    frames_valid[0] = False  # a tail with no frames, on an empty buffer
    mask = key_mask(fill, WIDTH, frames_valid, FRAMES, every_row_has_a_key=False)
    assert mask is not None and mask.bias is None
    scores, values = scores_and_values(attn, generator)
    with torch.inference_mode():
        mine = attend(attn, values, scores, mask)
        funasr = attn.forward_attention(values, scores, mask.ones)
    assert torch.isfinite(mine).all()
    assert torch.equal(mine, funasr)


# ---- whole layers against FunASR's own forward_chunk -------------------------------------

CHUNK = (5, 10, 5)
LOOK_BACK = 4


def test_encoder_layer_is_bit_for_bit_funasr_forward_chunk(paraformer_engine):
    """A full look-back, no mask: the batched layer (no dropout calls, keys and values
    joined by one cat) gives FunASR's output and next look-back, the same bits."""
    layer = paraformer_engine.online.model.encoder.encoders[0]
    attn = layer.self_attn
    generator = torch.Generator().manual_seed(11)
    frames, width = sum(CHUNK), LOOK_BACK * CHUNK[1]
    x = torch.randn(BATCH, frames, layer.size, generator=generator)
    kv = torch.randn(BATCH, 2, attn.h, width, attn.d_k, generator=generator)
    keep = frames - CHUNK[2]
    with torch.inference_mode():
        mine, window = encoder_layer_chunk(layer, x, kv, None, keep)
        cache = {"k": kv[:, 0].clone(), "v": kv[:, 1].clone()}
        funasr, cache = layer.forward_chunk(x, cache, list(CHUNK), LOOK_BACK)
    assert torch.equal(mine, funasr)
    assert torch.equal(window[:, 0], cache["k"]) and torch.equal(window[:, 1], cache["v"])


def test_decoder_layer_is_bit_for_bit_funasr_forward_chunk(paraformer_engine):
    """Every row started, the same token count: output, FSMN memory and cross-attention
    look-back equal FunASR's (its FSMN cache kept whole, ours as its last K-1 columns)."""
    layer = paraformer_engine.online.model.decoder.decoders[0]
    fsmn, cross = layer.self_attn, layer.src_attn
    generator = torch.Generator().manual_seed(12)
    tokens, frames, width, dim = 3, sum(CHUNK), CHUNK[1], layer.size
    x = torch.randn(BATCH, tokens, dim, generator=generator)
    memory = torch.randn(BATCH, frames, dim, generator=generator)
    fsmn_cache = torch.randn(BATCH, dim, fsmn.kernel_size - 1 + 2, generator=generator)
    kv = torch.randn(BATCH, 2, cross.h, width, cross.d_k, generator=generator)
    state = fsmn_cache[:, :, -(fsmn.kernel_size - 1) :]
    counts = torch.full((BATCH,), tokens)
    with torch.inference_mode():
        step = decoder_tokens(None, counts, tokens, dim, fsmn.kernel_size)
        mine, new_state, window = decoder_layer_chunk(layer, x, memory, (state, step), kv, None)
        opt = {"k": kv[:, 0].clone(), "v": kv[:, 1].clone()}
        funasr, _, new_cache, opt = layer.forward_chunk(
            x, memory, fsmn_cache.clone(), opt, list(CHUNK), 1)
    assert torch.equal(mine, funasr)
    assert torch.equal(new_state, new_cache[:, :, -(fsmn.kernel_size - 1) :])
    assert torch.equal(window[:, 0], opt["k"]) and torch.equal(window[:, 1], opt["v"])
