"""The batched engine against FunASR's per-stream inference on the LARGE model.

The tests prove token equality on the tiny generated model; this check runs
the same comparison on the real paraformer-large streaming architecture
(generated, random weights): every fixture of tests/data streamed through
captiond's engine, all fixtures together in one batch per 600 ms tick (so
streams at different positions and lengths share forwards), and through
FunASR's own `AutoModel.generate(cache=...)` one stream at a time. Exit
status 1 if any fixture's tokens differ.

    python -m bench.large_equivalence --model-dir bench/out/models-large
    python -m bench.large_equivalence --model-dir DIR --device cuda --dtype float32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

from streaming.engine import ChunkRequest, StreamOptions
from tests.streaming.engines.funasr_reference import funasr_tokens

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ("utt01", "utt02", "utt03", "utt04", "utt05", "multi")


def load(name: str) -> np.ndarray:
    audio, rate = soundfile.read(ROOT / "tests" / "data" / f"{name}.wav", dtype="float32")
    assert rate == 16000
    return audio


def batched_tokens(engine, audios: dict[str, np.ndarray], options: StreamOptions) -> dict:
    """Every fixture in one batch per tick, one stride each; is_last on its last stride."""
    stride = engine.chunk_samples(options)
    ticks = {name: max(1, -(-len(a) // stride)) for name, a in audios.items()}
    states = {name: engine.new_stream(options) for name in audios}
    tokens: dict[str, list[str]] = {name: [] for name in audios}
    for tick in range(max(ticks.values())):
        live = [name for name in audios if tick < ticks[name]]
        requests = [ChunkRequest(states[name], audios[name][tick * stride:(tick + 1) * stride],
                                 tick == ticks[name] - 1) for name in live]
        for name, result in zip(live, engine.step(requests)):
            tokens[name] += result.committed
            states[name] = result.state
    return tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "bench" / "out" / "models-large")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from server.config import ParaformerOptions
    from server.engines import load_paraformer

    engine = load_paraformer(ParaformerOptions(
        str(args.model_dir / "paraformer-streaming"), offline_model=None, punc_model=None,
        dtype=args.dtype), device=args.device)
    options = StreamOptions()
    audios = {name: load(name) for name in FIXTURES}
    started = time.monotonic()
    ours = batched_tokens(engine, audios, options)
    reference = {name: funasr_tokens(engine, a, options.chunk_size) for name, a in audios.items()}
    rows = [{"fixture": name, "tokens": len(reference[name]),
             "equal": ours[name] == reference[name]} for name in FIXTURES]
    for row in rows:
        print(f"{row['fixture']:<8} {row['tokens']:>4} tokens  "
              f"{'equal' if row['equal'] else 'DIFFERENT'}")
    equal = all(row["equal"] for row in rows)
    print(f"{'all equal' if equal else 'MISMATCH'} ({time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": "python -m bench.large_equivalence " + " ".join(sys.argv[1:]),
            "model_dir": str(args.model_dir), "device": args.device, "dtype": args.dtype,
            "rows": rows, "all_equal": equal}, indent=2))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
