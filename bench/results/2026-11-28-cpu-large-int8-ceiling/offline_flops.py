"""The large model's final pass (offline model, timestamps, punctuation): floating-point
work per second of utterance audio, on the five fixture utterances in one batch.

    PYTHONPATH=. python bench/results/2026-11-28-cpu-large-int8-ceiling/offline_flops.py
"""

import json
import sys
from pathlib import Path

import soundfile
from torch.utils.flop_counter import FlopCounterMode

from bench.final_pass_bench import ROOT, load_final_pass
from streaming.engine import FinalRequest, StreamOptions

final_pass = load_final_pass(Path("bench/out/models-large"), "batched")
clips = [soundfile.read(ROOT / "tests" / "data" / f"utt0{i}.wav", dtype="float32")[0]
         for i in range(1, 6)]
seconds = sum(len(c) for c in clips) / 16000
batch = [FinalRequest(c, StreamOptions()) for c in clips]
final_pass.finalize(batch)  # warm-up
counter = FlopCounterMode(display=False)
with counter:
    final_pass.finalize(batch)
gflop = counter.get_total_flops() / 1e9
figures = {"audio_s": seconds, "gflop": gflop, "gflop_per_audio_s": gflop / seconds}
print(json.dumps(figures))
Path(sys.argv[1] if len(sys.argv) > 1 else "offline_flops.json").write_text(
    json.dumps(figures, indent=2))
