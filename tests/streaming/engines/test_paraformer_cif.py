"""The online CIF for a batch (paraformer_cif) against FunASR's walk, row by row.

`reference` is `CifPredictorV2.forward_chunk`'s loop over one stream's frames,
with its padding skipped as the engine skips it. The batched walk must give
the same fires and the same values (`torch.equal`): token embeddings, and the
integrate and hidden carried to the next chunk.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streaming.engines import funasr_adapter
from streaming.engines.paraformer_cif import cif_fire, cif_tokens

THRESHOLD = 1.0


def reference(hidden: torch.Tensor, alphas: torch.Tensor, valid: torch.Tensor):
    """FunASR's scalar loop for one row: (tokens, integrate, carried hidden)."""
    integrate = torch.tensor(0.0)
    frames = torch.zeros(hidden.shape[1])
    tokens = []
    for t in range(hidden.shape[0]):
        if not valid[t]:
            continue
        alpha = alphas[t]
        if alpha + integrate < THRESHOLD:
            integrate = integrate + alpha
            frames += alpha * hidden[t]
        else:
            frames += (THRESHOLD - integrate) * hidden[t]
            tokens.append(frames)
            integrate = integrate + alpha
            integrate = integrate - THRESHOLD
            frames = integrate * hidden[t]
    carried = frames / integrate if integrate > 0.0 else frames
    return tokens, integrate, carried


def batch(seed: int, rows: int = 7, steps: int = 22, dim: int = 16):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, steps, dim, generator=generator)
    alphas = torch.rand(rows, steps, generator=generator) * 0.7
    alphas[0] = 0.0  # silence: nothing fires, everything is carried
    alphas[1, :6] = torch.tensor([0.25, 0.25, 0.5, 1.0, 2.5, 0.0])  # exact hits, a double
    alphas[2] = 1.5  # a fire at every step
    valid = torch.ones(rows, steps, dtype=torch.bool)
    valid[3, 15:-1] = False  # a final padded into a wider group: padding, then the tail
    valid[4, -1] = False  # not final: no tail step
    return hidden, alphas, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_walk_gives_funasr_walk_values(seed):
    hidden, alphas, valid = batch(seed)
    embeds, counts, integrate, carried = cif_fire(
        THRESHOLD, hidden, alphas.numpy(), valid.numpy())
    assert embeds.shape == hidden.shape
    for b in range(hidden.shape[0]):
        tokens, want_integrate, want_carried = reference(hidden[b], alphas[b], valid[b])
        assert counts[b] == len(tokens)
        for k, token in enumerate(tokens):
            assert torch.equal(embeds[b, k], token), (b, k)
        assert not embeds[b, len(tokens):].any(), "positions past the tokens are zeros"
        assert torch.equal(integrate[b], want_integrate), b
        assert torch.equal(carried[b], want_carried), b
    assert counts[0] == 0 and counts[2] == hidden.shape[1]
    assert counts.sum() > 3 * hidden.shape[0], "the batch should fire tokens"


def test_counts_come_back_on_the_host():
    hidden, alphas, valid = batch(3)
    _, counts, _, _ = cif_fire(THRESHOLD, hidden, alphas.numpy(), valid.numpy())
    assert isinstance(counts, np.ndarray)


@pytest.mark.parametrize("seed", [0, 1])
def test_offline_cif_gives_funasr_cif_values(seed):
    """The final pass's token predictor: FunASR's `cif` over a padded batch (weights
    zeroed past each utterance's end), both outputs, the same values."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(5, 40, 16, generator=generator)
    alphas = torch.rand(5, 40, generator=generator) * 0.6
    alphas[1, 25:] = 0.0  # a shorter utterance
    alphas[2, :8] = torch.tensor([0.25, 0.25, 0.5, 1.0, 2.5, 0.0, 0.0, 1.0])  # exact hits
    alphas[3] = 0.0  # nothing fires
    want = funasr_adapter.cif_with_hidden(hidden, alphas, THRESHOLD)
    got = cif_tokens(hidden, alphas, THRESHOLD)
    assert got[0].shape == want[0].shape
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
