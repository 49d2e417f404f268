"""Online fbank features for a round of streams, behind one call (docs/design.md §6).

`FunasrOnlineFrontend` runs FunASR's own `WavFrontendOnline` stream by stream
(through `extract_fbank`, exactly as `ParaformerStreaming.inference` does) and
moves the features to the model's device. Any frontend with the same two
methods can replace it in the engine:

- `new_state()`: the per-stream look-back state (FunASR's `cache["frontend"]`);
- `extract(states, audios, is_final)`: one stride per row; per row a
  (T_i, D_in) tensor on the device in the model dtype. The runner never
  passes a final stride under one 60 ms unit (FunASR extracts nothing there).

The engine runs `paraformer_features.BatchedOnlineFrontend` (all rows in one
batched computation); this per-stream one is the reference it is tested
against and the `frontend="funasr"` option of the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from streaming.engines import funasr_adapter


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
    ) -> list[Tensor]:
        out: list[Tensor] = []
        for state, audio, final in zip(states, audios, is_final):
            speech, _ = funasr_adapter.extract_fbank(
                [torch.from_numpy(audio)], data_type="sound", frontend=self.frontend,
                cache=state, is_final=final,
            )
            out.append(speech[0].to(self.device, self.dtype))
        return out
