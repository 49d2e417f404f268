"""Device-side slot pool for the batched streaming Paraformer's per-stream state.

Every live stream of one chunk setting owns a slot: row `slot` of a set of
preallocated tensors on the model's device (encoder look-back K/V, the overlap
frames' first-layer projection, CIF carry, decoder FSMN memory and K/V, and
the per-row ints). A step gathers its rows with `index_select` and writes the
new state back with `index_copy_`, so the cost per step does not grow with a
Python loop over streams or a `cat`/`split` of every cache.

Lifecycle. `StreamHandle` is what the session carries: it holds no tensor and
no slot when created (the session makes it on the event loop). The engine
thread takes a slot at the stream's first step, resetting that row. A slot
comes back either explicitly (FunASR re-initialises after an `is_last`
chunk) or when the session drops the handle without one (2pass mode never
sends `is_last` online): a `weakref.finalize` on the handle queues the slot
number, from whatever thread ran the collection, and the pool takes the
queue back at the start of the next step on the engine thread. Out of slots,
the pool doubles, copying the old rows into the bigger tensors.
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

_NO_SAMPLES = np.zeros(0, np.float32)


def to_device(device: torch.device, *arrays: np.ndarray) -> list[Tensor]:
    """Host arrays onto the device. A copy from pageable host memory first waits for
    everything queued on the device, so a step makes its copies before its kernels:
    then there is nothing to wait for."""
    return [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]


@dataclass(eq=False)
class StreamHandle:
    """One stream of the online pass: host-side data and, once stepped, a pool slot."""

    chunk_size: tuple[int, int, int]
    # Audio of an unfinished stride (an empty array is shared: it is replaced, never written).
    prev_samples: np.ndarray = field(default_factory=lambda: _NO_SAMPLES)
    frontend: Any = None  # the frontend's per-stream state; made with the slot
    slot: int | None = None
    finalizer: weakref.finalize | None = field(default=None, repr=False)


def bucket_size(n: int) -> int:
    """The padded batch size for n rows: powers of two up to 64, then multiples of 64."""
    if n <= 64:
        return 1 << max(0, n - 1).bit_length()
    return -(-n // 64) * 64


class StatePool:
    """Slot tensors of all live streams of one chunk setting.

    `rows` maps a state name to its (capacity, *row shape) tensor. The host
    keeps a copy of the look-back fills, the one thing that decides a shape
    (whether an attention mask is needed at all) without a device sync.
    """

    def __init__(
        self, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]], device: torch.device,
        capacity: int = 8, initial: dict[str, Tensor] | None = None,
    ) -> None:
        """`initial`: a fresh row's value for some states (the others start at zero)."""
        if capacity < 1:
            raise ValueError("a pool needs at least one slot to double from")
        self.shapes = shapes
        self.device = device
        self.rows: dict[str, Tensor] = {
            name: torch.zeros((capacity, *shape), dtype=dtype, device=device)
            for name, (shape, dtype) in shapes.items()
        }
        self.initial = initial or {}
        self.enc_fill = np.zeros(capacity, np.int64)  # host copies of rows["enc_fill"] …
        self.dec_fill = np.zeros(capacity, np.int64)
        self._free = list(range(capacity - 1, -1, -1))  # pop() hands out the lowest slot
        self._dropped: collections.deque[int] = collections.deque()  # from finalizers

    @property
    def capacity(self) -> int:
        return len(self.enc_fill)

    @property
    def occupied(self) -> int:
        """Slots held by streams, including dropped ones not yet taken back."""
        return self.capacity - len(self._free)

    # -- slots ---------------------------------------------------------------

    def take_back_dropped(self) -> None:
        """Free the slots of collected handles; call on the engine thread only."""
        while self._dropped:
            self._free.append(self._dropped.popleft())

    def acquire(self, handles: Sequence[StreamHandle]) -> None:
        """Give each handle a slot, with a fresh row (zeros, or its `initial` value)."""
        capacity = self.capacity
        while capacity - self.occupied < len(handles):
            capacity *= 2
        if capacity > self.capacity:
            self._grow(capacity)
        slots = [self._free.pop() for _ in handles]
        for handle, slot in zip(handles, slots):
            handle.slot = slot
            # deque.append is atomic: the finalizer may run on any thread.
            handle.finalizer = weakref.finalize(handle, self._dropped.append, slot)
            handle.finalizer.atexit = False
        index = torch.tensor(slots, device=self.device)
        for name, tensor in self.rows.items():
            if name in self.initial:
                tensor[index] = self.initial[name].to(tensor.dtype)
            else:
                tensor.index_fill_(0, index, 0)
        self.enc_fill[slots] = 0
        self.dec_fill[slots] = 0

    def release(self, handle: StreamHandle) -> None:
        """The stream ended (is_last): its slot is free for the next one."""
        if handle.slot is None:
            return
        if handle.finalizer is not None:
            handle.finalizer.detach()
        self._free.append(handle.slot)
        handle.slot, handle.finalizer = None, None

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        for name, tensor in self.rows.items():
            bigger = tensor.new_zeros((capacity, *tensor.shape[1:]))
            bigger[:old] = tensor
            self.rows[name] = bigger
        self.enc_fill = np.concatenate((self.enc_fill, np.zeros(capacity - old, np.int64)))
        self.dec_fill = np.concatenate((self.dec_fill, np.zeros(capacity - old, np.int64)))
        self._free[:0] = range(capacity - 1, old - 1, -1)  # new slots after the old free ones

    # -- rows ------------------------------------------------------------------

    def gather(self, index: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        # On a 2-D view: torch's CPU index_select copies whole rows there, 2-2.5x
        # faster than on the 6-D K/V tensors (measured at 256 rows).
        out = {}
        for name in names:
            rows = self.rows[name]
            flat = rows.view(rows.shape[0], -1).index_select(0, index)
            out[name] = flat.view(len(index), *rows.shape[1:])
        return out

    def scatter(self, index: Tensor, values: dict[str, Tensor]) -> None:
        """Write rows back; index must not repeat a slot."""
        for name, value in values.items():
            self.rows[name].index_copy_(0, index, value.to(self.rows[name].dtype))
