"""Cost of the paraformer final pass per utterance, in the same run:
`batched` (the default: the offline fbank, the timestamp head and the
punctuation of a batch's utterances at once, the results read back once per
batch), `funasr-frontend` (FunASR's frontend, one utterance at a time),
`timestamps-one-by-one` (the timestamp head one utterance at a time),
`punctuation-one-by-one` (FunASR's CT-Transformer inference, one text at a
time), `funasr-inference` (FunASR's SeACo inference, reading each utterance's
results back on its own) and `before` (all four as FunASR does them).

    python -m bench.final_pass_bench --model-dir bench/out/models-tiny

Each repeat times `finalize` on a batch of fixture utterances (tests/data
utt01–05, cycled) with each configuration in turn; the median of the repeats
is reported, in ms per utterance.
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

import soundfile
import torch

from streaming.engine import FinalRequest, StreamOptions

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("batched", "funasr-frontend", "timestamps-one-by-one", "punctuation-one-by-one",
           "funasr-inference", "before")


def load_final_pass(model_dir: Path, config: str, device: str = "cpu"):
    from server.config import ParaformerOptions
    from server.engines import load_paraformer_final
    from streaming.engines import funasr_adapter

    frontend = "funasr" if config in ("funasr-frontend", "before") else "batched"
    final_pass = load_paraformer_final(ParaformerOptions(
        str(model_dir / "paraformer-streaming"), str(model_dir / "paraformer-offline"),
        str(model_dir / "ct-punc"), frontend=frontend), device=device)
    if config in ("funasr-inference", "before"):  # set captiond's inference aside
        vars(funasr_adapter.network(final_pass.offline)).pop("inference", None)
    if config in ("timestamps-one-by-one", "before"):
        funasr_adapter.batch_invariant_timestamps(final_pass.offline, batched=False)
    if config in ("punctuation-one-by-one", "before"):
        final_pass.punctuator.batched = False
    return final_pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "final_pass.json")
    args = parser.parse_args()
    configs = args.configs.split(",")
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")
    if args.threads:
        torch.set_num_threads(args.threads)
    clips = [soundfile.read(ROOT / "tests" / "data" / f"utt0{i}.wav", dtype="float32")[0]
             for i in range(1, 6)]
    passes = {name: load_final_pass(args.model_dir, name) for name in configs}
    rows = []
    for size in (int(b) for b in args.batch_sizes.split(",")):
        batch = [FinalRequest(clips[i % len(clips)], StreamOptions()) for i in range(size)]
        for final_pass in passes.values():
            final_pass.finalize(batch)  # warm-up
        times: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(args.repeat):
            for name, final_pass in passes.items():
                start = time.perf_counter()
                final_pass.finalize(batch)
                times[name].append((time.perf_counter() - start) / size * 1000)
        row = {"batch": size, **{f"{name}_ms_per_utterance": statistics.median(t)
                                 for name, t in times.items()}, "runs_ms": times}
        rows.append(row)
        print(f"batch {size:>3}: " + ", ".join(
            f"{name} {row[f'{name}_ms_per_utterance']:.1f}" for name in configs)
            + " ms per utterance", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": "python -m bench.final_pass_bench " + " ".join(sys.argv[1:]),
        "code": str(Path(sys.modules["streaming"].__file__).parents[1]),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor(), "torch": torch.__version__},
        "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
