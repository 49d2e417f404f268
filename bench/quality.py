"""Caption quality of the whisper engine on the speech fixtures (issue: Whisper engine).

For each fixture, streamed at real-time pace through a real `captiond serve
--engine whisper` over loopback, one at a time, it measures:
- WER of the streamed finals against the reference text, next to offline
  faster-whisper on the whole file (the ceiling);
- first-partial latency: from sending the first speech sample of an utterance
  to the first partial that shows text for it;
- final latency: from sending the last speech sample of an utterance to its
  final (includes the endpoint's trailing-silence wait, --end-silence-ms);
- partial churn: displayed words (stable + unstable) later retracted, per 100
  words of final text.
Speech onsets and offsets come from the fixtures themselves: their silence is
exact digital zeros.

    python -m bench.quality [--json bench/out/quality.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

from bench.load import ServerProcess
from clients.client import CaptionClient
from tests.wer import wer, words

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
FIXTURES = ["utt01.wav", "utt02.wav", "utt03.wav", "utt04.wav", "utt05.wav", "multi.wav"]
FRAME_S = 0.1


@dataclass
class FixtureResult:
    name: str
    wer_streamed: float
    wer_offline: float
    first_partial_s: list[float]
    final_s: list[float]
    churn_per_100_words: float


def speech_regions(samples: np.ndarray, rate: int, min_gap_s: float = 0.5) -> list[tuple]:
    """(onset_s, offset_s) of each utterance: runs of non-zero audio."""
    loud = np.flatnonzero(samples != 0)
    gaps = np.flatnonzero(np.diff(loud) > min_gap_s * rate)
    starts = np.concatenate(([loud[0]], loud[gaps + 1]))
    ends = np.concatenate((loud[gaps], [loud[-1]]))
    return [(s / rate, (e + 1) / rate) for s, e in zip(starts, ends)]


async def stream_fixture(url: str, pcm: bytes) -> tuple[list[dict], list[float], float]:
    """Messages with their receive times, and when the stream's audio started."""
    received: list[tuple[dict, float]] = []
    async with CaptionClient.connect(url) as client:
        await client.start(mode="2pass", wav_name="quality")
        start = time.monotonic()

        async def receive() -> None:
            async for message in client.messages():
                received.append((message, time.monotonic() - start))

        receiver = asyncio.create_task(receive())
        frame = int(32000 * FRAME_S)
        for index, offset in enumerate(range(0, len(pcm), frame)):
            await client.send_audio(pcm[offset : offset + frame])
            await asyncio.sleep(max(0.0, start + (index + 1) * FRAME_S - time.monotonic()))
        await client.end()
        await receiver
    return [m for m, _ in received], [t for _, t in received], start


def churn(messages: list[dict]) -> tuple[int, int]:
    """(retracted displayed words, final words) over all utterances."""
    retracted = final_words = 0
    for segment in {m["segment"] for m in messages if "segment" in m}:
        shown = [words(f"{m['stable']} {m['unstable']}") for m in messages
                 if m.get("segment") == segment and m["mode"] == "2pass-online"]
        final = [words(m["text"]) for m in messages
                 if m.get("segment") == segment and m["mode"] == "2pass-offline"]
        sequence = shown + final[:1]
        for before, after in zip(sequence, sequence[1:]):
            kept = 0
            while kept < min(len(before), len(after)) and before[kept] == after[kept]:
                kept += 1
            retracted += len(before) - kept
        final_words += len(final[0]) if final else 0
    return retracted, final_words


def latencies(messages, times, regions) -> tuple[list[float], list[float]]:
    first_partial, final = [], []
    for segment, (onset, offset) in enumerate(regions):
        shown = [t for m, t in zip(messages, times) if m.get("segment") == segment
                 and m["mode"] == "2pass-online" and (m["stable"] or m["unstable"])]
        done = [t for m, t in zip(messages, times) if m.get("segment") == segment
                and m["mode"] == "2pass-offline"]
        if shown:
            first_partial.append(round(shown[0] - onset, 3))
        if done:
            final.append(round(done[0] - offset, 3))
    return first_partial, final


def offline_text(model, samples: np.ndarray) -> str:
    segments, _ = model.transcribe(samples.astype(np.float32) / 32768, language="en",
                                   beam_size=5)
    return " ".join(s.text for s in segments)


async def measure(url: str, model, name: str, reference) -> FixtureResult:
    samples, rate = soundfile.read(DATA / name, dtype="int16")
    messages, times, _ = await stream_fixture(url, samples.astype("<i2").tobytes())
    reference = " ".join(reference) if isinstance(reference, list) else reference
    finals = " ".join(m["text"] for m in messages if m["mode"] == "2pass-offline")
    retracted, final_words = churn(messages)
    first_partial, final = latencies(messages, times, speech_regions(samples, rate))
    return FixtureResult(
        name=name,
        wer_streamed=round(wer(reference, finals), 4),
        wer_offline=round(wer(reference, offline_text(model, samples)), 4),
        first_partial_s=first_partial,
        final_s=final,
        churn_per_100_words=round(100 * retracted / max(1, final_words), 2),
    )


async def run(url: str, model) -> list[FixtureResult]:
    references = json.loads((DATA / "references.json").read_text())
    return [await measure(url, model, name, references[name]) for name in FIXTURES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="whisper model (default tiny.en)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "quality.json")
    args = parser.parse_args(argv)
    from server.config import WhisperOptions
    from server.engines import load_whisper

    ceiling_model = load_whisper(WhisperOptions(model=args.model), device="auto").model
    server_args = ["--engine", "whisper", "--no-calibrate"]
    if args.model:
        server_args += ["--model", args.model]
    with ServerProcess(server_args) as server:
        results = asyncio.run(run(server.url, ceiling_model))
    print(f"{'fixture':>10} {'WER':>6} {'offline':>7} {'1st partial s':>14} {'final s':>12} "
          f"{'churn/100w':>10}")
    for r in results:
        print(f"{r.name:>10} {r.wer_streamed:>6.1%} {r.wer_offline:>7.1%} "
              f"{_fmt(r.first_partial_s):>14} {_fmt(r.final_s):>12} {r.churn_per_100_words:>10}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(f"wrote {args.json}")
    return 0


def _fmt(values: list[float]) -> str:
    return ",".join(f"{v:.2f}" for v in values) or "-"


if __name__ == "__main__":
    sys.exit(main())
