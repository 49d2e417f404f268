"""SeACo Paraformer's timestamp head over a batch, each utterance as if alone.

The head (FunASR's CifPredictorV3 with `cnn_blstm` upsampling) is a conv over
the encoder output, a transposed conv that upsamples it `upsample_times`, a
BLSTM, a linear layer giving per-step weights, and a CIF integrate-and-fire
over them. FunASR runs it on the padded batch: the conv reads the encoder's
output past a shorter utterance's end, and the BLSTM's backward direction
starts in the padding, so a batched final's token times differed from the
same utterance's alone. Run one utterance at a time, it cost the final pass
about as much as the rest of the offline model on the tiny test model, and
its CIF is a Python loop over every upsampled step.

Here the batch runs at once and stays equal to one-at-a-time: frames past
each utterance's end are zeroed (what the conv's own zero padding gives an
utterance alone), the transposed conv does not overlap frames (kernel =
stride), the BLSTM gets packed sequences of each utterance's own length, and
the weights past the end are masked as FunASR masks them.

The token predictor of the same models (CifPredictorV3's `forward`) also runs
the head's upsampling and BLSTM over the padded batch, for a token count that
inference drops (`calc_predictor` keeps four of its five outputs).
`predict_tokens` gives those four without it: the BLSTM ran twice per final batch.

The CIF over the weights (`cif_fires`) runs on the host, also for FunASR's own
timestamp code (funasr_adapter.batch_invariant_timestamps): FunASR loops over
the steps with a few tensor operations each, and on a GPU every one of them is
a kernel launch and a wait. In a 2pass server on an H200 that loop was 69 % of
the final-pass process (bench/RESULTS.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from streaming.engines import funasr_adapter, paraformer_cif
from streaming.engines.paraformer_layers import cif_alphas


def supports(predictor: Any) -> bool:
    """Whether `batched_upsample_timestamps` reproduces this predictor's head."""
    if getattr(predictor, "upsample_type", None) != "cnn_blstm":
        return False
    conv = predictor.upsample_cnn
    return conv.kernel_size[0] == conv.stride[0] == predictor.upsample_times \
        and conv.padding[0] == 0 and conv.output_padding[0] == 0


def batched_upsample_timestamps(predictor: Any, encoder_out: Tensor, lengths: Tensor,
                                token_num: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(downsampled alphas, their CIF fires, upsampled alphas, their fires), as
    `predictor.get_upsample_timestamp` gives each utterance alone (zero past its end)."""
    batch, frames, _ = encoder_out.shape
    times = predictor.upsample_times
    valid = torch.arange(frames, device=encoder_out.device)[None, :] < lengths[:, None]
    context = (encoder_out * valid[..., None]).transpose(1, 2)
    if predictor.use_cif1_cnn:
        context = torch.relu(predictor.cif_conv1d(predictor.pad(context)))
    upsampled = predictor.upsample_cnn(context).transpose(1, 2)  # (batch, frames * times, d)
    packed = pack_padded_sequence(upsampled, (lengths * times).cpu(), batch_first=True,
                                  enforce_sorted=False)
    hidden, _ = predictor.blstm(packed)
    hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=frames * times)
    alphas = torch.sigmoid(predictor.cif_output2(hidden))
    alphas = torch.relu(alphas * predictor.smooth_factor2 - predictor.noise_threshold2)
    up_valid = valid.repeat_interleave(times, dim=1)  # each frame's `times` steps
    alphas = (alphas * up_valid[..., None]).squeeze(-1)
    if token_num is not None:
        alphas = alphas * (token_num / alphas.sum(-1))[:, None]
    down = alphas.reshape(batch, -1, times).sum(-1)
    threshold = predictor.threshold - 1e-4
    down_fires = cif_fires(down, threshold)
    up_fires = cif_fires(alphas, threshold)
    # An utterance alone has nothing past its end: zero there, as one-at-a-time padding.
    return (down * valid, down_fires * valid, alphas * up_valid, up_fires * up_valid)


# From this many rows, a step over all rows as arrays beats each row's scalar loop
# (measured: 1 row of 750 steps 0.2 ms as scalars, 1.3 ms as 1-row arrays).
_ROWS_TOGETHER = 4


def cif_fires(alphas: Tensor, threshold: float) -> Tensor:
    """FunASR's `cif_wo_hidden` bit for bit, its loop over steps run on the host.

    Each step adds a weight to a float32 sum, records it, and takes `threshold`
    off where it reached it. A float32 addition rounds the same on any device,
    so numpy's float32 arrays give FunASR's values; a row of 750 steps (15 s of
    speech, upsampled) takes 0.13 ms here against FunASR's 19.6 ms on the CPU, and
    the rows of a batch go through the steps together.
    Weights wider than float32 keep FunASR's loop (it adds them unrounded)."""
    if alphas.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return funasr_adapter.cif_wo_hidden(alphas, threshold)
    weights = alphas.detach().to("cpu", torch.float32).numpy()
    limit = np.float32(threshold)  # as torch rounds a Python scalar for a float32 tensor
    fires = np.empty_like(weights)
    if len(weights) >= _ROWS_TOGETHER:  # all rows at once: the same float32 operations
        total = np.zeros(weights.shape[0], np.float32)
        for t in range(weights.shape[1]):
            total = total + weights[:, t]
            fires[:, t] = total
            total = np.where(total >= limit, total - limit, total)
    else:  # FunASR's reruns, one utterance each: scalars cost less than 1-row arrays
        for row, out in zip(weights, fires):
            scalar, sums = np.float32(0.0), []
            for weight in row:
                scalar = scalar + weight
                sums.append(scalar)
                if scalar >= limit:
                    scalar = scalar - limit
            out[:] = sums
    return torch.from_numpy(fires).to(alphas.device)


def predict_tokens(predictor: Any, encoder_out: Tensor,
                   lengths: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`calc_predictor` of SeACo/BiCif Paraformer at inference: (acoustic embeddings,
    token counts, weights, CIF peaks), the same operations in the same order as
    CifPredictorV3's `forward` without its timestamp branch, whose output
    `calc_predictor` drops."""
    frames = encoder_out.shape[1]
    valid = (torch.arange(frames, device=encoder_out.device)[None, :] < lengths[:, None]).float()
    alphas = cif_alphas(predictor, encoder_out) * valid  # the online predictor's weights
    token_num = alphas.sum(-1)
    if predictor.tail_threshold > 0.0:
        encoder_out, alphas, token_num = predictor.tail_process_fn(
            encoder_out, alphas, token_num, mask=valid)
    embeds, peaks = paraformer_cif.cif_tokens(encoder_out, alphas, predictor.threshold)
    if predictor.tail_threshold > 0.0:
        embeds = embeds[:, : int(torch.max(token_num).type(torch.int32).item()), :]
    return embeds, token_num, alphas, peaks
