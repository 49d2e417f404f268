"""Per-chunk cost of the Paraformer online pass by batch size (docs/design.md §6).

For each batch size B, B streams of real speech (tests/data/multi.wav, each
from a different offset) are warmed up until every one has its full encoder
look-back (steady state), then `--ticks` batched `step` calls of one 600 ms
stride per stream are timed. Reported: ms per step, ms per stream-chunk, and
the implied real-time capacity (streams = 600 ms / ms per stream-chunk) on
this machine. `--funasr` adds FunASR's own batch-1 streaming inference
(`AutoModel.generate(cache=...)`) on the same audio as the baseline.

    python -m bench.engine_step_bench --model-dir /tmp/large-models
    python -m bench.engine_step_bench --model-dir DIR --batch-sizes 1,8 --quantize int8
    python -m bench.engine_step_bench --model-dir DIR --device cuda --buckets off
    python -m bench.engine_step_bench --model-dir DIR --device cuda --cuda-graphs

`--buckets on/off` pads online batches to bucket sizes or not (default: the
engine's choice: off).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from streaming.engine import ChunkRequest, StreamOptions

ROOT = Path(__file__).resolve().parents[1]
CHUNK_S = 0.6
WARMUP_STRIDES = 4  # encoder look-back is 4 chunks of 10 frames; 15 frames enter per stride


@dataclass
class Row:
    config: str
    batch_size: int
    ms_per_step: float
    ms_per_stream_chunk: float
    streams_real_time: float
    rtf_per_stream: float
    frontend_ms_per_stream_chunk: float = 0.0  # fbank on the CPU, inside the step
    cpu_ms_per_stream_chunk: float = 0.0  # this process's CPU time, all its threads


def load_audio() -> np.ndarray:
    audio, rate = soundfile.read(ROOT / "tests" / "data" / "multi.wav", dtype="float32")
    assert rate == 16000
    return audio


def piece(audio: np.ndarray, stream: int, tick: int, stride: int) -> np.ndarray:
    start = (stream * 7919 + tick * stride) % (len(audio) - stride)
    return audio[start : start + stride]


def vary_size(batch: int, tick: int) -> int:
    """A different batch size each timed tick, within the top quarter of `batch`."""
    return batch - (tick * 37) % max(1, batch // 4)


def streams(engine, audio: np.ndarray, batch: int) -> Callable[[int, int], None]:
    """`batch` fresh streams of real speech, and `step(tick, size)`: one stride
    for the first `size` of them (the rest wait)."""
    options = StreamOptions()
    stride = engine.chunk_samples(options)
    states = [engine.new_stream(options) for _ in range(batch)]

    def step(tick: int, size: int) -> None:
        results = engine.step(
            [ChunkRequest(s, piece(audio, i, tick, stride), False)
             for i, s in enumerate(states[:size])]
        )
        states[:size] = [r.state for r in results]

    return step


def bench_engine(engine, audio: np.ndarray, batch: int, ticks: int, config: str,
                 vary: bool = False) -> Row:
    step = streams(engine, audio, batch)
    rows_stepped = [0]

    def one_tick(tick: int) -> None:
        # with vary, a live server's shape: each step a new batch size (the rest wait)
        size = vary_size(batch, tick) if vary and tick >= WARMUP_STRIDES else batch
        step(tick, size)
        rows_stepped[0] += size

    for tick in range(WARMUP_STRIDES):
        one_tick(tick)
    frontend = _time_frontend(engine.runner.frontend)
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        rows_stepped[0] = 0
        for tick in range(WARMUP_STRIDES, WARMUP_STRIDES + ticks):
            one_tick(tick)
        _sync(engine.runner.device)
        mean_batch = rows_stepped[0] / ticks
        row = make_row(config, batch, (time.perf_counter() - start) / ticks, mean_batch)
    finally:
        del engine.runner.frontend.extract  # the class's own method again
    row.frontend_ms_per_stream_chunk = round(1000 * frontend[0] / rows_stepped[0], 2)
    # With several torch threads this is more than the wall time: what the other
    # processes of a busy machine lose (OpenMP's waits included).
    row.cpu_ms_per_stream_chunk = round(
        1000 * (time.process_time() - cpu_start) / rows_stepped[0], 2)
    return row


def profile_step(engine, audio: np.ndarray, batch: int) -> dict:
    """One steady step of `batch` streams under torch's profiler. Where the kernels'
    own time is far below the wall time, the step waits on the host (Python and
    operator dispatch), and a bigger GPU cannot make it faster."""
    from torch.profiler import ProfilerActivity, profile

    step = streams(engine, audio, batch)
    for tick in range(WARMUP_STRIDES):
        step(tick, batch)
    device = engine.runner.device
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    _sync(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        step(WARMUP_STRIDES, batch)
        _sync(device)
        wall = time.perf_counter() - start
    events = prof.events()
    kernels = [e for e in events if e.device_type.name == "CUDA"]
    by_self = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return {"batch_size": batch, "wall_ms": round(wall * 1000, 1),
            "operators": sum(1 for e in events if e.name.startswith("aten::")),
            "kernels": len(kernels),
            "kernel_ms": round(sum(e.time_range.elapsed_us() for e in kernels) / 1000, 1),
            # where the host's time goes, by operator (self time: without its callees)
            "top_self_cpu_ms": {e.key: [round(e.self_cpu_time_total / 1000, 1), e.count]
                                for e in by_self[:12]}}


def _time_frontend(frontend) -> list[float]:
    """Accumulate the time spent in the runner's feature extraction (one call a round)."""
    total = [0.0]
    extract = type(frontend).extract

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return extract(frontend, *args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    frontend.extract = timed
    return total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_funasr(engine, audio: np.ndarray, ticks: int) -> Row:
    """FunASR's own streaming inference, one stream, same stride and look-back settings."""
    stride = engine.chunk_samples(StreamOptions())
    cache: dict = {}

    def one_tick(tick: int) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            engine.online.generate(
                input=piece(audio, 0, tick, stride), cache=cache, is_final=False,
                chunk_size=[5, 10, 5], encoder_chunk_look_back=4, decoder_chunk_look_back=1,
            )

    for tick in range(WARMUP_STRIDES):
        one_tick(tick)
    start = time.perf_counter()
    for tick in range(WARMUP_STRIDES, WARMUP_STRIDES + ticks):
        one_tick(tick)
    return make_row("funasr-batch1", 1, (time.perf_counter() - start) / ticks)


def make_row(config: str, batch: int, seconds_per_step: float,
             mean_batch: float | None = None) -> Row:
    per_chunk = seconds_per_step / (mean_batch or batch)
    return Row(config, batch, round(seconds_per_step * 1000, 1), round(per_chunk * 1000, 1),
               round(CHUNK_S / per_chunk, 2), round(per_chunk / CHUNK_S, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True,
                        help="root holding paraformer-streaming/ (captiond make-test-models)")
    parser.add_argument("--batch-sizes", default="1,4,8,16,32")
    parser.add_argument("--ticks", type=int, default=3, help="timed strides per batch size")
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--dtype", default=None, help="float16/bfloat16 (CUDA only)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--buckets", choices=["on", "off"], default=None,
                        help="pad online batches to bucket sizes (default: the engine's, off)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="the online encoder and decoder as CUDA graphs per bucketed shape")
    parser.add_argument("--frontend", choices=["batched", "funasr"], default="batched",
                        help="fbank of all streams at once, or FunASR's per stream")
    parser.add_argument("--fsmn-conv", choices=["conv", "unfold", "native"], default="conv",
                        help="FSMN depthwise convolutions: Conv1d or unfold + weighted sum")
    parser.add_argument("--vary", action="store_true",
                        help="also time each B with a different batch size every step (up to B), "
                             "as in a live server")
    parser.add_argument("--funasr", action="store_true", help="also time FunASR's batch-1 path")
    parser.add_argument("--profile", action="store_true",
                        help="after each batch size, profile one more step: operator and "
                             "kernel counts, kernel time against wall time (host-bound or not)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, all cores)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "engine_step.json")
    args = parser.parse_args()

    from server.config import ParaformerOptions
    from server.engines import load_paraformer

    buckets = None if args.buckets is None else args.buckets == "on"
    engine = load_paraformer(ParaformerOptions(
        str(args.model_dir / "paraformer-streaming"), offline_model=None, punc_model=None,
        dtype=args.dtype, quantize=args.quantize, bucket_batches=buckets,
        frontend=args.frontend, fsmn_conv=args.fsmn_conv, cuda_graphs=args.cuda_graphs,
    ), device=args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    audio = load_audio()
    padded = "buckets" if engine.runner.bucket_batches else ""
    fbank = "" if args.frontend == "batched" else "funasr-fbank"
    unfold = "" if args.fsmn_conv == "conv" else args.fsmn_conv
    threads = f"t{args.threads}" if args.threads else ""
    graphs = "graphs" if args.cuda_graphs else ""
    config = "batched" + "".join(
        f"-{o}" for o in (args.quantize, args.dtype, padded, fbank, unfold, threads, graphs)
        if o)
    rows, profiles = [], []
    with torch.inference_mode():
        if args.funasr:
            rows.append(bench_funasr(engine, audio, args.ticks))
            print_row(rows[-1], header=True)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            for vary in (False, True) if args.vary else (False,):
                rows.append(bench_engine(engine, audio, batch, args.ticks,
                                         config + ("-vary" if vary else ""), vary))
                print_row(rows[-1], header=len(rows) == 1)
            if args.profile:
                profiles.append(profile_step(engine, audio, batch))
                print("profile", json.dumps(profiles[-1]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor(), "torch": torch.__version__,
                    "device": args.device, "bucket_batches": engine.runner.bucket_batches,
                    "frontend": args.frontend,
                    # OpenMP's waiting (server/cli.py sets both for `captiond serve`)
                    "openmp": {name: os.environ.get(name)
                               for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}},
        "command": "python -m bench.engine_step_bench " + " ".join(sys.argv[1:]),
        "model_dir": str(args.model_dir), "rows": [asdict(r) for r in rows],
        "profiles": profiles,
        "graphs": {name: {"captures": g.captures, "replays": g.replays}
                   for name, g in (("encoder", engine.runner.encoder_graphs),
                                   ("decoder", engine.runner.decoder_graphs)) if g},
    }, indent=2))
    print(f"wrote {args.json}")


def print_row(row: Row, header: bool) -> None:
    if header:
        print(f"{'config':<16}{'batch':>6}{'ms/step':>10}{'ms/stream-chunk':>17}"
              f"{'streams (RT)':>14}{'RTF/stream':>12}{'fbank ms':>10}{'cpu ms':>8}")
    print(f"{row.config:<16}{row.batch_size:>6}{row.ms_per_step:>10}"
          f"{row.ms_per_stream_chunk:>17}{row.streams_real_time:>14}{row.rtf_per_stream:>12}"
          f"{row.frontend_ms_per_stream_chunk:>10}{row.cpu_ms_per_stream_chunk:>8}", flush=True)


if __name__ == "__main__":
    main()
