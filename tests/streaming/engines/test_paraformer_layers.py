"""The batched layers' attention with a key mask against FunASR's own (paraformer_layers).

Streams that are warming up, and finals padded into a wider group, hide some
attention keys. `attend` adds the mask to the scores as a 0/-inf bias where
FunASR fills them and zeroes the softmax after: the results must be the same
bits, and a row whose keys are all hidden must get FunASR's result, not NaN.
"""

from __future__ import annotations

import pytest
import torch

from streaming.engines.paraformer_layers import attend, key_mask

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
