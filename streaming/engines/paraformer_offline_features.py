"""FunASR's offline fbank + LFR + CMVN frontend (`WavFrontend`), batched over
the utterances of a final-pass batch.

FunASR's `WavFrontend.forward` computes Kaldi's fbank one utterance at a time
in Python; on the 2-core machine that was about a quarter of the final pass's
time per utterance (docs/design.md §6). Here all utterances' frames go through
one FFT and one mel matmul (`KaldiFbank`, shared with the online frontend),
then LFR and CMVN as `apply_lfr`/`apply_cmvn` do:

- LFR: output frame k of an utterance of T fbank frames stacks frames
  k*lfr_n - (lfr_m - 1)//2 … + lfr_m - 1, each clamped to [0, T - 1] (FunASR
  pads with the first frame in front and the last frame behind), for
  k < ceil(T / lfr_n).
- CMVN: (x + shift) * scale from am.mvn.

The result is padded with zeros to the longest utterance, as FunASR's.
Anything this does not reproduce exactly goes to FunASR's own frontend:
dither (random), samples not scaled to int16, frames not snipped at the edges,
and utterances shorter than one fbank frame (FunASR shortens the frame).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from streaming.engines.paraformer_features import KaldiFbank, _ranks


class BatchedWavFrontend:
    """Called as FunASR calls its frontend in offline inference:
    `frontend(waveforms, lengths)` → (features, feature lengths). Every other
    attribute is FunASR's frontend's (inference reads fs, frame_shift, lfr_n)."""

    def __init__(self, frontend: Any, device: str | torch.device) -> None:
        self.funasr = frontend
        self.fbank = KaldiFbank(frontend, int(frontend.frame_length * frontend.fs / 1000),
                                int(frontend.frame_shift * frontend.fs / 1000), device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["funasr"], name)

    def _exact(self, lengths: list[int]) -> bool:
        """Whether this batch's features equal FunASR's, bar float rounding."""
        f = self.funasr
        return (self.fbank.dither == 0.0 and getattr(f, "upsacle_samples", True)
                and getattr(f, "snip_edges", True)
                and min(lengths) >= self.fbank.frame_length)

    def __call__(self, waveforms: Tensor, lengths: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        lengths = [int(n) for n in lengths]
        if not lengths or not self._exact(lengths):
            return self.funasr(waveforms, lengths, **kwargs)
        fb = self.fbank
        audio = waveforms.detach().to("cpu", torch.float32).numpy()
        samples = [audio[i, :n] for i, n in enumerate(lengths)]
        counts = np.array([1 + (n - fb.frame_length) // fb.frame_shift for n in lengths])
        frames = fb._fbank(samples, counts)  # (sum of counts, n_mels), utterance after utterance
        stacks = -(-counts // fb.lfr_n)
        row = np.repeat(np.arange(len(counts)), stacks)
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        t = _ranks(stacks)[:, None] * fb.lfr_n - (fb.lfr_m - 1) // 2 + np.arange(fb.lfr_m)
        t = np.clip(t, 0, (counts - 1)[row][:, None]) + first[row][:, None]
        feats = frames.index_select(0, torch.from_numpy(t.reshape(-1)).to(fb.device))
        feats = feats.reshape(-1, fb.feature_dim)
        if fb._cmvn is not None:
            feats = (feats + fb._cmvn[0]) * fb._cmvn[1]
        per_utterance = torch.split(feats, stacks.tolist())
        return pad_sequence(per_utterance, batch_first=True), torch.as_tensor(stacks)
