"""A round's rows of the batched online pass, and how they are cut and grouped
(paraformer_batch.py; docs/design.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streaming.engines.paraformer_pool import StreamHandle

# FunASR's streaming frontend works in 60 ms units of 960 samples (chunk_size[1] * 960).
SAMPLES_PER_UNIT = 960


@dataclass
class Row:
    """One stride of one stream within a round."""

    index: int  # request position
    handle: StreamHandle
    speech: Tensor | None  # (T_new, D_in) features; None = tail (flush the overlap frames)
    is_final: bool

    @property
    def frames(self) -> int:
        ctx = self.handle.chunk_size[0] + self.handle.chunk_size[2]
        return ctx + (0 if self.speech is None else self.speech.shape[0])


def cut_strides(handle: StreamHandle, samples: np.ndarray, is_last: bool) -> list[np.ndarray]:
    """A stream's whole strides of audio (its unfinished rest kept on the handle),
    split as ParaformerStreaming.inference splits them."""
    stride = handle.chunk_size[1] * SAMPLES_PER_UNIT
    audio = np.concatenate((handle.prev_samples, np.asarray(samples, dtype=np.float32)))
    n = len(audio) // stride + int(is_last)
    rest = 0 if is_last else len(audio) % stride
    handle.prev_samples = audio[len(audio) - rest :] if rest else np.zeros(0, np.float32)
    return [audio[i * stride : (i + 1) * stride] for i in range(n)]


def all_have_frames(batch: list[Row]) -> bool:
    """Every row has a real frame, so no row's attention keys are all hidden (a flushing
    tail without overlap frames, chunk_size [l, c, 0], is the exception)."""
    return min(r.frames for r in batch) > 0


def valid_mask(lengths: list[int], width: int, device: torch.device) -> Tensor | None:
    """(B, width) mask of each row's first lengths[b] positions; None when all are full."""
    if min(lengths) >= width:
        return None
    return torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[
        :, None]


def group_rows(rows: list[Row]) -> list[list[Row]]:
    """Rows that can share one forward.

    Non-final rows need the same frame count (it decides what enters their
    look-back); a final row's caches are dropped after it, so it joins the
    widest group of its chunk settings that is at least as wide, padded and
    masked, instead of running alone. Finals wider than every group (or with
    none to join) share a padded group of their own.
    """
    exact: dict[tuple, list[Row]] = {}
    finals: list[Row] = []
    for row in rows:
        if row.is_final:
            finals.append(row)
        else:
            exact.setdefault((row.frames, row.handle.chunk_size), []).append(row)
    spare: dict[tuple, list[Row]] = {}
    for row in finals:
        fits = [k for k in exact if k[1] == row.handle.chunk_size and k[0] >= row.frames]
        if fits:
            exact[max(fits)].append(row)
        else:
            spare.setdefault(row.handle.chunk_size, []).append(row)
    return list(exact.values()) + list(spare.values())


def pad_frames(x: Tensor, frames: int) -> Tensor:
    return torch.nn.functional.pad(x, (0, 0, 0, frames - x.shape[0])) if x.shape[0] < frames else x
