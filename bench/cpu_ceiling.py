"""How many real-time streams this CPU could carry at most with a model's
arithmetic alone: the online pass's floating-point work per 600 ms chunk
(counted by torch's FlopCounterMode on a real batched step) against the best
matrix-multiply rate torch reaches on this machine.

    python -m bench.cpu_ceiling --model-dir bench/out/models-large

The ceiling ignores everything but the model's float32 arithmetic (features,
the front end, the clients, the final pass): a server holds fewer streams.
Reported beside it: the rate the batched step itself reaches, so the gap
between the two is what better kernels could still win.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.engine_step_bench import CHUNK_S, WARMUP_STRIDES, load_audio, piece
from streaming.engine import ChunkRequest, StreamOptions

ROOT = Path(__file__).resolve().parents[1]


def gemm_gflops(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Best sustained float32 GFLOP/s of (m×k)·(k×n) on this machine's torch threads."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        torch.mm(a, b)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        calls += 1
    return 2 * m * k * n * calls / (time.perf_counter() - start) / 1e9


def step_figures(engine, batch: int, ticks: int) -> dict[str, float]:
    """GFLOP per stream-chunk and the GFLOP/s the batched step reaches."""
    audio, options = load_audio(), StreamOptions()
    stride = engine.chunk_samples(options)
    states = [engine.new_stream(options) for _ in range(batch)]

    def step(tick: int) -> None:
        results = engine.step([ChunkRequest(states[s], piece(audio, s, tick, stride), False)
                               for s in range(batch)])
        for s, result in enumerate(results):
            states[s] = result.state

    for tick in range(WARMUP_STRIDES):  # every stream with its full look-back
        step(tick)
    counter = FlopCounterMode(display=False)
    with counter:
        step(WARMUP_STRIDES)
    seconds = []
    for tick in range(ticks):
        start = time.perf_counter()
        step(WARMUP_STRIDES + 1 + tick)
        seconds.append(time.perf_counter() - start)
    flops = counter.get_total_flops()
    return {"gflop_per_stream_chunk": flops / batch / 1e9,
            "step_s": statistics.median(seconds),
            "step_gflops": flops / statistics.median(seconds) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "cpu_ceiling.json")
    args = parser.parse_args()

    from server.config import ParaformerOptions
    from server.engines import load_paraformer

    engine = load_paraformer(ParaformerOptions(
        str(args.model_dir / "paraformer-streaming"), offline_model=None, punc_model=None),
        device="cpu")
    with torch.inference_mode():
        figures = step_figures(engine, args.batch, args.ticks)
        # the encoder's feed-forward shape at this batch, and a large square one
        rows = args.batch * 20
        figures["gemm_gflops_ffn_shape"] = gemm_gflops(rows, 512, 2048)
        figures["gemm_gflops_2048"] = gemm_gflops(2048, 2048, 2048)
    best = max(figures["gemm_gflops_ffn_shape"], figures["gemm_gflops_2048"])
    per_stream_second = figures["gflop_per_stream_chunk"] / CHUNK_S
    figures["ceiling_streams"] = best / per_stream_second
    figures["step_streams"] = figures["step_gflops"] / per_stream_second
    for key, value in figures.items():
        print(f"{key:<24}{value:10.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": "python -m bench.cpu_ceiling " + " ".join(sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor(), "torch": torch.__version__},
        "batch": args.batch, "figures": figures}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
