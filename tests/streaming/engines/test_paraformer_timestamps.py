"""The offline model's timestamp head over a batch (paraformer_timestamps.py)
against the same head run on each utterance alone."""

from __future__ import annotations

import torch

from streaming.engines import funasr_adapter
from streaming.engines.paraformer_timestamps import batched_upsample_timestamps, cif_fires, supports

LENGTHS = [37, 12, 50, 3]  # encoder frames; the longest sets the batch's padding
TOKENS = [5.0, 2.0, 9.0, 1.0]
# Float sums in another order (a batched BLSTM, packed rows); observed ≤ 2e-6.
TOLERANCE = 1e-5


def encoder_outputs(net) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor(LENGTHS)
    # Padding holds numbers, not zeros: an encoder's output past a row's end is not zero.
    out = torch.randn(len(LENGTHS), max(LENGTHS), net.encoder.output_size(), generator=generator)
    return out, lengths, torch.tensor(TOKENS)


def alone(predictor, out, lengths, tokens) -> list[tuple[torch.Tensor, ...]]:
    return [predictor.get_upsample_timestamp(out[i : i + 1, :n],
                                             torch.ones(1, 1, n, dtype=torch.bool),
                                             tokens[i : i + 1])
            for i, n in enumerate(lengths.tolist())]


def test_the_batched_head_gives_each_utterance_what_it_gets_alone(paraformer_engine):
    net = funasr_adapter.network(paraformer_engine.offline)
    assert supports(net.predictor)
    out, lengths, tokens = encoder_outputs(net)
    with torch.inference_mode():
        together = batched_upsample_timestamps(net.predictor, out, lengths, tokens)
        singles = alone(net.predictor, out, lengths, tokens)
    for row, single in enumerate(singles):
        for mine, theirs in zip(together, single):
            length = theirs.shape[1]
            torch.testing.assert_close(mine[row, :length], theirs[0], rtol=0, atol=TOLERANCE)
            assert not mine[row, length:].any()  # nothing past the end, as alone


def test_funasrs_padded_batch_does_not(paraformer_engine):
    """Why the head is replaced: FunASR's own batch reads the padding."""
    net = funasr_adapter.network(paraformer_engine.offline)
    out, lengths, tokens = encoder_outputs(net)
    mask = (torch.arange(out.shape[1])[None, :] < lengths[:, None])[:, None, :]
    with torch.inference_mode():
        padded = net.predictor.get_upsample_timestamp(out, mask, tokens)
        singles = alone(net.predictor, out, lengths, tokens)
    shorter = [i for i, n in enumerate(LENGTHS) if n < max(LENGTHS)]
    worst = max((padded[2][i, : singles[i][2].shape[1]] - singles[i][2][0]).abs().max()
                for i in shorter)
    assert worst > 10 * TOLERANCE  # observed 2e-4 on the tiny model


# ---- the CIF on the host -------------------------------------------------------------

THRESHOLD = 1.0 - 1e-4  # what FunASR's timestamp code passes


def random_weights(rows: int, steps: int, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(rows * 1000 + steps)
    weights = torch.rand(rows, steps, generator=generator) * 0.7
    weights[:, 0] = THRESHOLD  # a sum exactly at the threshold fires
    return weights.to(dtype)


def test_host_cif_gives_funasrs_fires_bit_for_bit():
    for rows, steps in ((1, 750), (5, 120)):
        for dtype in (torch.float32, torch.float16):
            weights = random_weights(rows, steps, dtype)
            mine = cif_fires(weights, THRESHOLD)
            theirs = funasr_adapter.cif_wo_hidden(weights, THRESHOLD)
            assert mine.dtype == theirs.dtype and mine.device == theirs.device
            assert torch.equal(mine, theirs), (rows, steps, dtype)
            assert (mine >= THRESHOLD).sum() > steps * rows // 4  # it fired, and often


def test_funasrs_timestamp_fallback_gives_the_same_stamps_with_the_host_cif(monkeypatch):
    """FunASR reruns CIF when the fires miss the token count (here: one token
    too many). Its stamps are the same with `timestamps_cif_on_host`."""
    from funasr.utils import timestamp_tools

    weights = random_weights(1, 300, torch.float32)[0]
    peaks = funasr_adapter.cif_wo_hidden(weights[None], THRESHOLD)[0]
    tokens = [f"w{i}" for i in range(int((peaks >= THRESHOLD).sum()) + 1)]  # a mismatch

    def stamps():
        return timestamp_tools.ts_prediction_lfr6_standard(weights.clone(), peaks.clone(),
                                                           list(tokens))

    # FunASR's loop (the same code as its timestamp module's own copy, which
    # loading a final pass in another test may have replaced already)
    monkeypatch.setattr(timestamp_tools, "cif_wo_hidden", funasr_adapter.cif_wo_hidden)
    theirs = stamps()
    funasr_adapter.timestamps_cif_on_host()
    assert timestamp_tools.cif_wo_hidden is cif_fires
    mine = stamps()
    assert mine == theirs and len(theirs[1]) == len(tokens)


# ---- the token predictor without the timestamp branch --------------------------------


def test_token_predictor_gives_funasrs_outputs_without_the_blstm(paraformer_engine, monkeypatch):
    """`predict_tokens` (installed as the loaded model's `calc_predictor`) gives
    FunASR's four outputs bit for bit on a padded batch, and its BLSTM does not run."""
    net = funasr_adapter.network(paraformer_engine.offline)
    assert net.calc_predictor.__name__ == "tokens_only"  # installed with the final pass
    out, lengths, _ = encoder_outputs(net)
    with torch.inference_mode():
        theirs = type(net).calc_predictor(net, out, lengths)  # FunASR's own method
        monkeypatch.setattr(net.predictor.blstm, "forward", _must_not_run)
        mine = net.calc_predictor(out, lengths)
    assert len(mine) == len(theirs) == 4
    for m, t in zip(mine, theirs):
        assert m.shape == t.shape and torch.equal(m, t)
    assert theirs[0].shape[1] > 0  # tokens were predicted


def _must_not_run(*args, **kwargs):
    raise AssertionError("the token predictor ran the timestamp head's BLSTM")
