"""PoolGraphs when a capture fails (paraformer_graphs.py). Here, on the CPU, every
capture fails for real (torch.cuda needs CUDA): the stack must still run, eagerly.
The graphs themselves are tested on CUDA (test_paraformer_cuda.py)."""

from __future__ import annotations

import pytest
import torch

from streaming.engines.paraformer_graphs import PoolGraphs
from streaming.engines.paraformer_pool import StatePool


def stack(pooled, outs, x, scale):
    assert outs is None  # eagerly, the stack makes its own outputs
    return (pooled["kv"] * scale + x,)


def test_a_failed_capture_warns_once_and_the_stack_runs_eagerly():
    pool = StatePool({"kv": ((3,), torch.float32)}, torch.device("cpu"), capacity=4)
    pool.rows["kv"] = torch.arange(12.0).view(4, 3)
    graphs = PoolGraphs(stack)
    index, x = torch.tensor([2, 0]), torch.ones(2, 3)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        (first,) = graphs(pool, ("kv",), index, (x,), (2.0,))
    torch.testing.assert_close(first, pool.rows["kv"][index] * 2.0 + x)
    (second,) = graphs(pool, ("kv",), torch.tensor([1]), (x[:1],), (3.0,))  # no warning
    torch.testing.assert_close(second, pool.rows["kv"][1:2] * 3.0 + 1)
    assert graphs.failed and graphs.captures == 0 and graphs.replays == 0
