"""How many real-time streams this CPU could carry at most with a model's
arithmetic alone: the online pass's floating-point work per 600 ms chunk
(counted by torch's FlopCounterMode on a real batched step) against the best
matrix-multiply rate torch reaches on this machine.

    python -m bench.cpu_ceiling --model-dir bench/out/models-large

The ceiling ignores everything but the model's arithmetic (features, the front
end, the clients, the final pass): a server holds fewer streams. Reported beside
it: the rate the batched step itself reaches, so the gap between the two is what
better kernels could still win.

The same for `--quantize int8`, which runs every nn.Linear as torch's dynamic
int8 Linear: the step's Linear calls are recorded by shape (rows, in, out), each
shape is timed alone as a float32 and as an int8 Linear, and the ceiling is the
time those Linear calls take at their best rates plus the rest of the step's
arithmetic at the best float32 rate. The int8 engine's own step is timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.engine_step_bench import CHUNK_S, WARMUP_STRIDES, load_audio, piece
from streaming.engine import ChunkRequest, StreamOptions
from streaming.engines import funasr_adapter

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


Shape = tuple[int, int, int]  # a Linear call: rows, in_features, out_features


def linear_gflops(shape: Shape, quantized: bool, seconds: float = 0.3) -> float:
    """Best sustained GFLOP/s of one Linear of this shape, float32 or dynamic int8."""
    rows, features_in, features_out = shape
    layer = torch.nn.Sequential(torch.nn.Linear(features_in, features_out))
    if quantized:
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated, still runs
            warnings.simplefilter("ignore")
            layer = torch.ao.quantization.quantize_dynamic(
                layer, {torch.nn.Linear}, dtype=torch.qint8)
    x = torch.randn(rows, features_in)
    for _ in range(3):
        layer(x)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        layer(x)
        calls += 1
    return 2 * rows * features_in * features_out * calls / (time.perf_counter() - start) / 1e9


@contextmanager
def linear_calls(engine, calls: Counter[Shape]) -> Iterator[None]:
    """While inside, count the online network's Linear calls by shape into `calls`."""

    def hook(module: torch.nn.Linear, inputs: tuple, _output: torch.Tensor) -> None:
        x = inputs[0]
        calls[(x.numel() // x.shape[-1], module.in_features, module.out_features)] += 1

    network = funasr_adapter.network(engine.online)
    hooks = [m.register_forward_hook(hook) for m in network.modules()
             if isinstance(m, torch.nn.Linear)]
    try:
        yield
    finally:
        for handle in hooks:
            handle.remove()


def linear_shape_ceilings(calls: Counter[Shape], batch: int, other_gflop: float,
                          best_float32: float) -> dict[str, float]:
    """Real-time streams if the step's Linear calls ran at each shape's best rate, float32
    and int8, and the rest of its arithmetic at the best float32 rate."""
    seconds = {"float32": 0.0, "int8": 0.0}
    for shape, count in calls.items():
        gflop = 2 * shape[0] * shape[1] * shape[2] * count / 1e9
        seconds["float32"] += gflop / linear_gflops(shape, quantized=False)
        seconds["int8"] += gflop / linear_gflops(shape, quantized=True)
    rest = other_gflop * batch / best_float32
    return {f"ceiling_streams_{name}_linear_shapes": CHUNK_S * batch / (linear + rest)
            for name, linear in seconds.items()}


def step_figures(engine, batch: int, ticks: int,
                 counting: Callable[[], AbstractContextManager] = nullcontext
                 ) -> dict[str, float]:
    """GFLOP per stream-chunk and the GFLOP/s the batched step reaches. `counting()`
    is entered around the one steady step whose FLOPs are counted, not the timed ones."""
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
    with counter, counting():
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
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="also the int8 ceiling and the int8 engine's own step")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "cpu_ceiling.json")
    args = parser.parse_args()

    from server.config import ParaformerOptions
    from server.engines import load_paraformer

    def load(quantize: str | None):
        return load_paraformer(ParaformerOptions(
            str(args.model_dir / "paraformer-streaming"), offline_model=None,
            punc_model=None, quantize=quantize), device="cpu")

    engine = load(None)
    calls: Counter[Shape] = Counter()
    with torch.inference_mode():
        figures = step_figures(engine, args.batch, args.ticks,
                               lambda: linear_calls(engine, calls))
        # the encoder's feed-forward shape at this batch, and a large square one
        rows = args.batch * 20
        figures["gemm_gflops_ffn_shape"] = gemm_gflops(rows, 512, 2048)
        figures["gemm_gflops_2048"] = gemm_gflops(2048, 2048, 2048)
    best = max(figures["gemm_gflops_ffn_shape"], figures["gemm_gflops_2048"])
    per_stream_second = figures["gflop_per_stream_chunk"] / CHUNK_S
    figures["ceiling_streams"] = best / per_stream_second
    figures["step_streams"] = figures["step_gflops"] / per_stream_second
    linear_gflop = sum(2 * r * i * o * n for (r, i, o), n in calls.items()) / args.batch / 1e9
    figures["linear_share"] = linear_gflop / figures["gflop_per_stream_chunk"]
    if args.quantize:
        other = figures["gflop_per_stream_chunk"] - linear_gflop
        with torch.inference_mode():
            figures |= linear_shape_ceilings(calls, args.batch, other, best)
            del engine
            int8 = step_figures(load(args.quantize), args.batch, args.ticks)
        figures["int8_step_s"] = int8["step_s"]
        figures["int8_step_streams"] = CHUNK_S * args.batch / int8["step_s"]
    for key, value in figures.items():
        print(f"{key:<24}{value:10.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": "python -m bench.cpu_ceiling " + " ".join(sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor(), "torch": torch.__version__},
        "batch": args.batch, "quantized_engine": torch.backends.quantized.engine,
        "linear_calls": [{"rows": r, "in": i, "out": o, "calls": n}
                         for (r, i, o), n in sorted(calls.items())],
        "figures": figures}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
