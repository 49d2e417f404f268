"""Where the final pass reads values back from its tensors, per batch.

    python -m bench.final_pass_reads --model-dir bench/out/models-tiny --batch-size 121

Each read (`.item()`, `.tolist()`, `.cpu()`, `.numpy()`, a tensor used as an
index, a bool, an int or a float) of a tensor on a GPU waits for everything
queued there. This counts those calls during one `finalize` of a batch of
fixture utterances (tests/data utt01–05, cycled), by the line that made them,
for captiond's SeACo inference (`batched`) and FunASR's (`funasr-inference`).
On a CUDA device only reads of device tensors are counted; on the CPU every
tensor is a host one, so there the counts say where reads would be, and the
locations tell which of them touch device tensors on a GPU.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import traceback
from pathlib import Path

import soundfile
import torch

from bench.final_pass_bench import ROOT, load_final_pass
from streaming.engine import FinalRequest, StreamOptions

READS = ("item", "tolist", "cpu", "numpy", "__index__", "__bool__", "__int__", "__float__")


def count_reads(final_pass, batch, on_device_only: bool) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name):
        def read(self, *args, **kwargs):
            if not on_device_only or self.device.type != "cpu":
                caller = next(f for f in reversed(traceback.extract_stack()[:-1])
                              if "site-packages/torch" not in f.filename)
                where = caller.filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
                counts[f"{where}:{caller.lineno} {name}"] += 1
            return originals[name](self, *args, **kwargs)
        return read

    try:
        for name in READS:
            setattr(torch.Tensor, name, counting(name))
        final_pass.finalize(batch)
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=121)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "final_reads.json")
    args = parser.parse_args()
    clips = [soundfile.read(ROOT / "tests" / "data" / f"utt0{i}.wav", dtype="float32")[0]
             for i in range(1, 6)]
    batch = [FinalRequest(clips[i % len(clips)], StreamOptions()) for i in range(args.batch_size)]
    out = {"command": "python -m bench.final_pass_reads " + " ".join(sys.argv[1:]),
           "batch_size": args.batch_size, "configs": {}}
    for config in ("batched", "funasr-inference"):
        final_pass = load_final_pass(args.model_dir, config, args.device)
        final_pass.finalize(batch)  # warm-up
        device = str(final_pass.offline.kwargs["device"])
        counts = count_reads(final_pass, batch, on_device_only=device != "cpu")
        out["configs"][config] = {"device": device, "reads": sum(counts.values()),
                                  "by_line": dict(counts.most_common())}
        print(f"{config}: {sum(counts.values())} reads per batch of {args.batch_size} "
              f"on {device}", flush=True)
        for where, n in counts.most_common(8):
            print(f"  {n:>5} {where}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
