"""Online feature extraction per stream-chunk: FunASR per stream vs batched (docs/design.md §6).

For each batch size B, B streams of real speech (tests/data/multi.wav, each
from a different offset) are warmed up for two 600 ms strides, then `--ticks`
strides are timed two ways: FunASR's `extract_fbank` with `WavFrontendOnline`
and a cache per stream (what the batched engine's `_row` does today), and one
`BatchedOnlineFrontend.extract` call for all B streams. Printed: ms per
stream-chunk for both. Rough figures on a shared machine, not results.

    python -m bench.features_bench
    python -m bench.features_bench --batch-sizes 64,256 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
import yaml

from streaming.engines.paraformer_features import BatchedOnlineFrontend

ROOT = Path(__file__).resolve().parents[1]
STRIDE = 9600
WARMUP_STRIDES = 2


def load_frontend(model_dir: Path):
    """WavFrontendOnline as FunASR builds it from a streaming model's config and am.mvn."""
    from funasr.frontends.wav_frontend import WavFrontendOnline

    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    return WavFrontendOnline(**config["frontend_conf"], cmvn_file=str(model_dir / "am.mvn"))


def piece(audio: np.ndarray, stream: int, tick: int) -> np.ndarray:
    start = (stream * 7919 + tick * STRIDE) % (len(audio) - STRIDE)
    return audio[start : start + STRIDE]


def time_funasr(frontend, audio: np.ndarray, batch: int, ticks: int) -> float:
    """Seconds per stream-chunk of per-stream extract_fbank."""
    from funasr.utils.load_utils import extract_fbank

    caches: list[dict] = [{} for _ in range(batch)]

    def one_tick(tick: int) -> None:
        for i, cache in enumerate(caches):
            extract_fbank([torch.from_numpy(piece(audio, i, tick))], data_type="sound",
                          frontend=frontend, cache=cache, is_final=False)

    for tick in range(WARMUP_STRIDES):
        one_tick(tick)
    start = time.perf_counter()
    for tick in range(WARMUP_STRIDES, WARMUP_STRIDES + ticks):
        one_tick(tick)
    return (time.perf_counter() - start) / (ticks * batch)


def time_batched(frontend, audio: np.ndarray, batch: int, ticks: int, device: str) -> float:
    """Seconds per stream-chunk of one batched extract call per tick."""
    batched = BatchedOnlineFrontend(frontend, device)
    states = [batched.new_state() for _ in range(batch)]

    def one_tick(tick: int) -> None:
        batched.extract(states, [piece(audio, i, tick) for i in range(batch)], [False] * batch)

    for tick in range(WARMUP_STRIDES):
        one_tick(tick)
    _sync(device)
    start = time.perf_counter()
    for tick in range(WARMUP_STRIDES, WARMUP_STRIDES + ticks):
        one_tick(tick)
    _sync(device)
    return (time.perf_counter() - start) / (ticks * batch)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a paraformer-streaming model dir (default: generate the tiny one; "
                             "the frontend settings are the real model's)")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--ticks", type=int, default=3, help="timed strides per batch size")
    parser.add_argument("--device", default="cpu", help="device of the batched frontend")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from server.model_generator import make_test_models

            make_test_models(Path(tmp), size="tiny", seed=0)
            model_dir = Path(tmp) / "paraformer-streaming"
        frontend = load_frontend(model_dir)
    audio, rate = soundfile.read(ROOT / "tests" / "data" / "multi.wav", dtype="float32")
    assert rate == 16000
    rows = []
    print(f"{'batch':>6}{'funasr ms/stream-chunk':>24}{'batched ms/stream-chunk':>25}")
    with torch.inference_mode():
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            with contextlib.redirect_stdout(io.StringIO()):  # kaldi-native-fbank's debug line
                funasr = time_funasr(frontend, audio, batch, args.ticks)
                ours = time_batched(frontend, audio, batch, args.ticks, args.device)
            rows.append({"batch_size": batch, "funasr_ms_per_stream_chunk": 1000 * funasr,
                         "batched_ms_per_stream_chunk": 1000 * ours})
            print(f"{batch:>6}{1000 * funasr:>24.3f}{1000 * ours:>25.3f}", flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "processor": platform.processor(), "torch": torch.__version__,
                        "device": args.device},
            "rows": rows,
        }, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
