"""Batch transcription of a folder of recordings: audio hours per wall-clock hour.

    python -m bench.batch_files --models bench/out/models-tiny            # 8 files × 2 min
    python -m bench.batch_files --models bench/out/models-large --files 4 --minutes 1

Generates a folder of recordings (the speech fixtures of tests/data joined in a
random order with random pauses, a few minutes each), starts `captiond serve`
with the given models, and transcribes the folder with `captiond file`'s batch
code in three configurations, in the same run, `--repeat` times each,
interleaved (two servers run side by side: batch size 1 and batched):

- `one-at-a-time`: `--jobs 1` against a server with `--max-batch-size 1`, so
  one utterance is recognised at a time (what transcribing file after file
  with FunASR's own offline inference does);
- `jobs-1`: `--jobs 1`, batched server: the utterances of the one file in
  flight share the final pass;
- `jobs-N`: `--jobs N` (default: the server's batch size), batched server:
  the utterances of N files share it.

Prints a table (medians) and writes the raw figures and the exact command to
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

from bench.load_server import ROOT, ServerProcess, machine, wait_idle
from clients.batch import BatchOptions, transcribe_batch

FIXTURES = ["utt01.wav", "utt02.wav", "utt03.wav", "utt04.wav", "utt05.wav", "multi.wav"]
RATE = 16000


def make_recordings(folder: Path, files: int, minutes: float, seed: int = 0) -> float:
    """`files` WAVs of about `minutes` each; returns their total seconds."""
    rng = np.random.default_rng(seed)
    clips = [soundfile.read(ROOT / "tests" / "data" / name, dtype="int16")[0]
             for name in FIXTURES]
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for index in range(files):
        parts, length = [], 0
        while length < minutes * 60 * RATE:
            clip = clips[rng.integers(len(clips))]
            pause = np.zeros(int(rng.uniform(0.3, 1.5) * RATE), dtype=np.int16)
            parts += [clip, pause]
            length += len(clip) + len(pause)
        soundfile.write(folder / f"call{index:03d}.wav", np.concatenate(parts), RATE)
        total += length
    return total / RATE


def transcribe(folder: Path, url: str, jobs: int, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    options = BatchOptions([str(folder / "*.wav")], url, ["json"], out, jobs, force=True,
                           progress=False)
    started = time.monotonic()
    report = asyncio.run(transcribe_batch(options))
    wall = time.monotonic() - started
    if report.failures:
        raise RuntimeError(f"batch failed: {report.failures}")
    return {"jobs": jobs, "files": report.transcribed, "audio_s": report.audio_s, "wall_s": wall,
            "speed": report.audio_s / wall}


def server_args(models: Path, device: str, batch: int) -> list[str]:
    return ["--online-model", str(models / "paraformer-streaming"),
            "--offline-model", str(models / "paraformer-offline"),
            "--punc-model", str(models / "ct-punc"), "--device", device,
            "--max-batch-size", str(batch), "--no-calibrate", "--no-admission"]


def run(args: argparse.Namespace) -> dict:
    folder = args.work / f"recordings-{args.files}x{args.minutes:g}min"
    if not folder.exists():
        make_recordings(folder, args.files, args.minutes)
    jobs = args.jobs or args.max_batch_size
    configs = [("one-at-a-time", 1, 1), ("jobs-1", args.max_batch_size, 1),
               (f"jobs-{jobs}", args.max_batch_size, jobs)]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    with contextlib.ExitStack() as stack:
        servers = {batch: stack.enter_context(ServerProcess(server_args(args.models, args.device,
                                                                        batch)))
                   for batch in {batch for _, batch, _ in configs}}
        for server in servers.values():
            warm_up(folder, server, args.work)
        # Interleaved, in a rotating order: a machine whose load drifts during the
        # run biases no configuration.
        for repeat in range(args.repeat):
            turn = repeat % len(configs)
            for name, batch, config_jobs in configs[turn:] + configs[:turn]:
                wait_idle(servers[batch])
                runs[name].append(transcribe(folder, servers[batch].url, config_jobs,
                                             args.work / f"out-{name}"))
                print(f"{name}: {runs[name][-1]['speed']:.1f}× real time", file=sys.stderr)
    return summarise(args, configs, runs)


def warm_up(folder: Path, server: ServerProcess, work: Path) -> None:
    """One file through the server, so first-call costs stay out of the figures."""
    warm = work / "warm-up"
    warm.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "call000.wav", warm / "call000.wav")
    transcribe(warm, server.url, 1, work / "warm-up-out")


def summarise(args: argparse.Namespace, configs: list, runs: dict[str, list[dict]]) -> dict:
    medians = {name: statistics.median(r["speed"] for r in runs[name]) for name in runs}
    batched = configs[-1][0]
    return {
        "command": " ".join([Path(sys.executable).name, "-m", "bench.batch_files", *sys.argv[1:]]),
        "machine": machine(args.device), "models": str(args.models),
        "recordings": {"files": args.files, "minutes_each": args.minutes},
        "max_batch_size": args.max_batch_size, "repeat": args.repeat,
        # audio seconds per wall-clock second = audio hours per wall-clock hour
        "median_audio_hours_per_wall_hour": medians,
        "ratio_batched_vs_one_at_a_time": medians[batched] / medians["one-at-a-time"],
        "ratio_batched_vs_jobs_1": medians[batched] / medians["jobs-1"],
        "runs": runs,
    }


def print_table(result: dict) -> None:
    print(f"{'configuration':<16} {'audio h per wall h (median)':>28}")
    for name, speed in result["median_audio_hours_per_wall_hour"].items():
        print(f"{name:<16} {speed:>28.1f}")
    print(f"batched / one at a time: {result['ratio_batched_vs_one_at_a_time']:.2f}×; "
          f"batched / --jobs 1: {result['ratio_batched_vs_jobs_1']:.2f}×")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True,
                        help="folder with paraformer-streaming/, paraformer-offline/, ct-punc/ "
                             "(captiond make-test-models DIR --size tiny|large)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of each recording")
    parser.add_argument("--jobs", type=int, help="files at once (default: --max-batch-size)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "batch_files")
    parser.add_argument("--label", default="cpu")
    args = parser.parse_args(argv)
    result = run(args)
    print_table(result)
    stamp = time.strftime("%Y-%m-%d")
    path = ROOT / "bench" / "results" / f"{stamp}-{args.label}-batch-files.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
