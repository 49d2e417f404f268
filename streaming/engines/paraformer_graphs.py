"""CUDA graphs of the online encoder's layer stack, one per batch shape (docs/design.md §6).

On a GPU the online step waits on the host: on an H200 at 250 streams its kernels
worked 24 ms of a ~104 ms step, the rest being Python and the launches of some
13,000 operator calls, most of them in the encoder's 50 layers (bench/RESULTS.md).
A CUDA graph records a stack's kernels once and launches them all with one call.

A graph replays fixed addresses and shapes. So each (pool, rows, frames) shape gets
its own, captured at its first use, and it is worth having only with bucketed batch
sizes (`bucket_batches`), which keep the shapes few. Inside the graph: the gather of
the rows' look-back from the pool (the graph reads the pool at the address it had
at capture; a pool that grew gets new graphs), the layers and the final norm. The
step copies the slot index and the first layer's projection into the graph's input
buffers and reads its outputs before the next replay of any graph (all graphs share
one memory pool; the stream orders each replay after the previous step's kernels).

Only steady groups are graphed: every look-back full and no padded final row, so
no attention or frame mask. Other groups run the same layers eagerly. A replay runs
the eager kernels, so the outputs are the same (tests on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# (look-back (B, L, 2, H, W, d_k), first layer's projection, first layer's input or
# None, keep) -> (output, new look-back)
Layers = Callable[[Tensor, Tensor, Tensor | None, int], tuple[Tensor, Tensor]]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    rows: Tensor  # the pool tensor it reads (held, so its address is not reused)
    index: Tensor
    q_k_v: Tensor
    x: Tensor | None
    outputs: tuple[Tensor, Tensor]


class EncoderGraphs:
    """`__call__(owner, rows, index, q_k_v, x, keep)` = `layers(rows[index], q_k_v, x,
    keep)`, through a CUDA graph per shape. `owner`: the slot pool whose look-back
    tensor `rows` is (it lives as long as the runner). `replays` and `captures`
    count what it did."""

    def __init__(self, layers: Layers, max_graphs: int = 64, warmups: int = 2) -> None:
        self.layers = layers
        self.max_graphs = max_graphs
        self.warmups = warmups
        self.graphs: dict[tuple, _Graph] = {}
        self._memory = None  # one memory pool shared by all graphs
        self.captures = 0
        self.replays = 0

    def __call__(self, owner: object, rows: Tensor, index: Tensor, q_k_v: Tensor,
                 x: Tensor | None, keep: int) -> tuple[Tensor, Tensor]:
        key = (id(owner), len(index), q_k_v.shape, q_k_v.dtype,
               None if x is None else x.shape, keep)
        entry = self.graphs.get(key)
        if entry is None or entry.rows is not rows:
            self._drop_stale(id(owner), rows)  # the pool grew: its graphs read the old one
            if len(self.graphs) >= self.max_graphs:
                return self.layers(_gather(rows, index), q_k_v, x, keep)
            entry = self.graphs[key] = self._capture(rows, index, q_k_v, x, keep)
        entry.index.copy_(index)
        entry.q_k_v.copy_(q_k_v)
        if x is not None:
            entry.x.copy_(x)
        entry.graph.replay()
        self.replays += 1
        return entry.outputs

    def _drop_stale(self, owner_id: int, rows: Tensor) -> None:
        for key in [k for k, g in self.graphs.items() if k[0] == owner_id and g.rows is not rows]:
            del self.graphs[key]

    def _capture(self, rows: Tensor, index: Tensor, q_k_v: Tensor, x: Tensor | None,
                 keep: int) -> _Graph:
        static_index, static_q_k_v = index.clone(), q_k_v.clone()
        static_x = None if x is None else x.clone()

        def run() -> tuple[Tensor, Tensor]:
            return self.layers(_gather(rows, static_index), static_q_k_v, static_x, keep)

        # Warm-up on a side stream, as torch asks: libraries set up their handles and
        # workspaces outside the capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmups):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._memory):
            outputs = run()
        if self._memory is None:
            self._memory = graph.pool()
        self.captures += 1
        return _Graph(graph, rows, static_index, static_q_k_v, static_x, outputs)


def _gather(rows: Tensor, index: Tensor) -> Tensor:
    """rows[index] (the pool's own gather: on a 2-D view)."""
    flat = rows.view(rows.shape[0], -1).index_select(0, index)
    return flat.view(len(index), *rows.shape[1:])
