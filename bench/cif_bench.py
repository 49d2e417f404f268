"""The final pass's CIF loops alone: FunASR's against captiond's, the same values.

    python -m bench.cif_bench --json bench/out/cif.json

`tokens`: FunASR's offline `cif(hidden, alphas, threshold)` (the token predictor
of SeACo/BiCif Paraformer: a dozen operator calls per frame over the batch)
against `paraformer_cif.cif_tokens` (the walk on the host, each token's weighted
frames summed on the device). `fires`: FunASR's `cif_wo_hidden` (the timestamp
head's) against `paraformer_timestamps.cif_fires`. Random weights with a mean of
0.25 (a token every ~4 frames, as speech gives), hidden width 512 (the large
model's); the median of `--repeat` calls, ms per call, on this machine's CPU (or
`--device cuda`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from streaming.engines import funasr_adapter
from streaming.engines.paraformer_cif import cif_tokens
from streaming.engines.paraformer_timestamps import cif_fires

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ((8, 80), (32, 150), (121, 300))  # (utterances, encoder frames)


def timed(fn, args: tuple, repeat: int, device: torch.device) -> float:
    """Median ms of `repeat` calls of fn(*args)."""
    runs = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(*args)
        if device.type == "cuda":
            torch.cuda.synchronize()
        runs.append(time.perf_counter() - start)
    return round(1000 * statistics.median(runs), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "cif.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for batch, frames in SHAPES:
            hidden = torch.randn(batch, frames, 512, generator=generator).to(device)
            alphas = (torch.rand(batch, frames, generator=generator) * 0.5).to(device)
            upsampled = (torch.rand(batch, 3 * frames, generator=generator) * 0.17).to(device)
            pairs = {
                "tokens_funasr_ms": (funasr_adapter.cif_with_hidden, (hidden, alphas, 1.0)),
                "tokens_captiond_ms": (cif_tokens, (hidden, alphas, 1.0)),
                "fires_funasr_ms": (funasr_adapter.cif_wo_hidden, (upsampled, 1.0 - 1e-4)),
                "fires_captiond_ms": (cif_fires, (upsampled, 1.0 - 1e-4)),
            }
            row = {"batch": batch, "frames": frames, **{
                name: timed(fn, fn_args, args.repeat, device)
                for name, (fn, fn_args) in pairs.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": "python -m bench.cif_bench " + " ".join(sys.argv[1:]),
        "machine": {"processor": platform.processor(), "torch": torch.__version__,
                    "device": args.device, "threads": args.threads},
        "rows": rows,
    }, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
