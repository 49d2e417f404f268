"""Online fbank features for a round of streams, behind one call (DESIGN §6).

`FunasrOnlineFrontend` runs FunASR's own `WavFrontendOnline` stream by stream
(through `extract_fbank`, exactly as `ParaformerStreaming.inference` does) and
moves the features to the model's device. Any frontend with the same two
methods can replace it in the engine:

- `new_state()`: the per-stream look-back state (FunASR's `cache["frontend"]`);
- `extract(states, audios, is_final)`: one stride per row; per row a
  (T_i, D_in) tensor on the device in the model dtype, or None where FunASR
  makes no frame (a final stride under one 60 ms unit: the encoder then only
  flushes its overlap frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

# FunASR's streaming frontend works in 60 ms units of 960 samples (chunk_size[1] * 960).
SAMPLES_PER_UNIT = 960


class FunasrOnlineFrontend:
    """FunASR's per-stream online fbank, one stream after another."""

    def __init__(self, frontend: Any, device: str | torch.device,
                 dtype: torch.dtype = torch.float32) -> None:
        self.frontend = frontend
        self.device = torch.device(device)
        self.dtype = dtype

    def new_state(self) -> dict:
        return {}

    def extract(
        self, states: Sequence[dict], audios: Sequence[np.ndarray], is_final: Sequence[bool],
    ) -> list[Tensor | None]:
        from funasr.utils.load_utils import extract_fbank

        out: list[Tensor | None] = []
        for state, audio, final in zip(states, audios, is_final):
            if final and len(audio) < SAMPLES_PER_UNIT:  # as ParaformerStreaming.inference
                out.append(None)
                continue
            speech, _ = extract_fbank(
                [torch.from_numpy(audio)], data_type="sound", frontend=self.frontend,
                cache=state, is_final=final,
            )
            out.append(speech[0].to(self.device, self.dtype))
        return out
