"""CUDA graphs of the online pass's layer stacks, one per batch shape (docs/design.md §6).

On a GPU the online step waits on the host: on an H200 at 250 streams its kernels
worked 24 ms of a ~104 ms step, the rest being Python and the launches of some
13,000 operator calls, most of them in the encoder's 50 and the decoder's 16
layers (bench/RESULTS.md). A CUDA graph records a stack's kernels once and launches
them all with one call.

A graph replays fixed addresses and shapes. So each (pool, rows, frames) shape gets
its own, captured at its first use, and it is worth having only with bucketed batch
sizes (`bucket_batches`), which keep the shapes few. Inside the graph: the gather of
the rows' caches from the slot pool (the graph reads the pool at the address it had
at capture; a pool that grew gets new graphs) and the layers. The step copies the
slot index and the other inputs into the graph's input buffers and uses its outputs
before the next replay of any graph of the same set (they share one memory pool;
the stream orders each replay after the kernels queued before it). The new caches,
the big outputs (some 4 MB a row for the large model's encoder), go to one buffer
per pool that all its graphs write: kept per graph, they would add up over the
bucket sizes (tens of GB at a thousand streams).

Only steady groups are graphed: every look-back full and no padded final row, so
no attention or frame mask. Other groups run the same layers eagerly. A replay runs
the eager kernels, so the outputs are the same (tests on CUDA). Should a capture
fail, the set warns once and runs its stack eagerly from then on: no caption is
lost for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from streaming.engines.paraformer_pool import StatePool

# fn(the pooled caches gathered by slot index, where to write the new caches (None:
# new tensors), *inputs, *consts) -> output tensors
Stack = Callable[..., tuple[Tensor, ...]]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    pooled: dict[str, Tensor]  # the pool tensors it reads (held: their addresses stay theirs)
    index: Tensor
    inputs: tuple[Tensor | None, ...]
    outputs: tuple[Tensor, ...]


class PoolGraphs:
    """`__call__(pool, names, index, inputs, consts)` = `fn(pool.gather(index, names),
    outs, *inputs, *consts)`, through a CUDA graph per shape. `outs`: per name, rows
    of a buffer shaped like the pool's tensor, for the stack's new caches. `consts`:
    Python values the stack depends on, part of the graph's key. `replays` and
    `captures` count what it did."""

    def __init__(self, fn: Stack, max_graphs: int = 64, warmups: int = 2) -> None:
        self.fn = fn
        self.max_graphs = max_graphs
        self.warmups = warmups
        self.graphs: dict[tuple, _Graph] = {}
        self._memory = None  # one memory pool shared by this set's graphs
        self._outs: dict[int, dict[str, Tensor]] = {}  # pool id -> new-cache buffers
        self.captures = 0
        self.replays = 0
        self.failed: str | None = None  # why a capture failed; then everything runs eagerly

    def __call__(self, pool: StatePool, names: Sequence[str], index: Tensor,
                 inputs: tuple[Tensor | None, ...], consts: tuple = ()) -> tuple[Tensor, ...]:
        # Pools live as long as the runner, so their ids stay theirs.
        key = (id(pool), len(index), consts,
               tuple(None if t is None else (t.shape, t.dtype) for t in inputs))
        pooled = {name: pool.rows[name] for name in names}
        entry = self.graphs.get(key)
        if entry is None or any(entry.pooled[k] is not v for k, v in pooled.items()):
            self._follow_pool(id(pool), pooled)
            entry = self._new_graph(pool, names, pooled, index, inputs, consts)
            if entry is None:  # over the cap, or capture failed: eagerly
                return self.fn(pool.gather(index, names), None, *inputs, *consts)
            self.graphs[key] = entry
        entry.index.copy_(index)
        for static, tensor in zip(entry.inputs, inputs):
            if static is not None:
                static.copy_(tensor)
        entry.graph.replay()
        self.replays += 1
        return entry.outputs

    def _follow_pool(self, pool_id: int, pooled: dict[str, Tensor]) -> None:
        """Before a capture: drop the graphs that read this pool's old tensors (it grew),
        and make its new-cache buffers, or make them again at its new size."""
        for key in [k for k, g in self.graphs.items() if k[0] == pool_id
                    and any(g.pooled[name] is not t for name, t in pooled.items())]:
            del self.graphs[key]
        outs = self._outs.get(pool_id)
        if outs is None or any(outs[n].shape != t.shape for n, t in pooled.items()):
            self._outs[pool_id] = {n: torch.empty_like(t) for n, t in pooled.items()}

    def _new_graph(self, pool: StatePool, names: Sequence[str], pooled: dict[str, Tensor],
                   index: Tensor, inputs: tuple[Tensor | None, ...],
                   consts: tuple) -> _Graph | None:
        """A captured graph for this shape; None past `max_graphs` or once a capture failed."""
        if self.failed is not None or len(self.graphs) >= self.max_graphs:
            return None
        try:
            return self._capture(pool, names, pooled, index, inputs, consts)
        except RuntimeError as exc:
            self.failed = str(exc)
            warnings.warn(f"CUDA graph capture failed, the layers run eagerly: {exc}",
                          RuntimeWarning, stacklevel=3)
            return None

    def _capture(self, pool: StatePool, names: Sequence[str], pooled: dict[str, Tensor],
                 index: Tensor, inputs: tuple[Tensor | None, ...], consts: tuple) -> _Graph:
        static_index = index.clone()
        static_inputs = tuple(None if t is None else t.clone() for t in inputs)
        outs = {name: rows[: len(index)] for name, rows in self._outs[id(pool)].items()}

        def run() -> tuple[Tensor, ...]:
            return self.fn(pool.gather(static_index, names), outs, *static_inputs, *consts)

        # Warm-up on a side stream, as torch asks: libraries set up their handles and
        # workspaces outside the capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmups):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the final pass may run on another thread of this process
        # (`--final-pass thread`); its CUDA calls must neither fail nor be captured.
        with torch.cuda.graph(graph, pool=self._memory, capture_error_mode="thread_local"):
            outputs = run()
        if self._memory is None:
            self._memory = graph.pool()
        self.captures += 1
        return _Graph(graph, pooled, static_index, static_inputs, outputs)

