"""bench.engine_step_bench with torch's quantised engine set first.

argv[1]: x86 (torch's default), fbgemm or onednn; the rest goes to the bench.
"""

import runpy
import sys

import torch

torch.backends.quantized.engine = sys.argv.pop(1)
sys.argv[0] = "bench.engine_step_bench"
runpy.run_module("bench.engine_step_bench", run_name="__main__")
