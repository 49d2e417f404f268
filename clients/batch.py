"""`captiond file` on many recordings: a pool of concurrent offline streams.

Each input is decoded on the client while it streams (never held whole) and
sent in `offline` mode as fast as the server reads it; the server segments it
by VAD and batches its utterances with those of the other files in flight
through the final pass (docs/batch.md). Finals come back per utterance, with
times, so the progress bar moves as they arrive, and a dropped connection is
resumed after the last utterance received. A file that fails (not audio,
corrupt, refused) is reported at the end and never stops the batch; an
unreachable server does, since every other file would fail the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from clients.audio_input import SAMPLE_RATE, AudioDecodeError, decode_blocks, probe_duration
from clients.batch_inputs import BatchInput, find_inputs, plan_inputs
from clients.batch_progress import BatchProgress
from clients.client import CaptionClient, ServerError, Transcript, is_utterance_final
from clients.transcript_files import write_transcript

SEND_BLOCK_SECONDS = 2.0  # large frames: an upload needs no 100 ms latency
RESUMES = 2  # reconnections per file after its connection dropped


@dataclass
class BatchOptions:
    inputs: list[str]
    url: str
    formats: list[str] = field(default_factory=lambda: ["txt"])
    out_dir: Path | None = None
    jobs: int = 4
    hotwords: str | None = None
    force: bool = False  # transcribe again even inputs whose transcripts are up to date
    progress: bool = True


@dataclass
class BatchReport:
    total: int = 0
    transcribed: int = 0
    skipped: int = 0  # up to date from an earlier run
    audio_s: float = 0.0  # of the files transcribed in this run
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, why)

    @property
    def speed(self) -> float:
        """Audio seconds transcribed per wall-clock second (× real time)."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.total} files: {self.transcribed} transcribed, {self.skipped} up to date, "
                f"{len(self.failures)} failed; {_duration(self.audio_s)} of audio in "
                f"{_duration(self.wall_s)} ({self.speed:.1f}× real time)")


async def transcribe_batch(options: BatchOptions, status: Console | None = None) -> BatchReport:
    """Transcribe every input not yet done; the report says what happened to each."""
    started = time.monotonic()
    status = status or Console(stderr=True, highlight=False)
    found, missing = find_inputs(options.inputs)
    report = BatchReport(total=len(found) + len(missing), failures=list(missing))
    todo = []
    for item in plan_inputs(found, options.formats, options.out_dir):
        if item.done and not options.force:
            report.skipped += 1
        else:
            todo.append(item)
    durations = await asyncio.to_thread(_probe_all, todo, report)
    with BatchProgress(status, len(todo), sum(durations.values()), options.progress) as bar:
        queue: asyncio.Queue[BatchInput] = asyncio.Queue()
        for item in todo:
            if item.source in durations:
                queue.put_nowait(item)
        workers = [asyncio.create_task(_worker(queue, options, report, bar))
                   for _ in range(max(1, options.jobs))]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    report.wall_s = time.monotonic() - started
    return report


def _probe_all(todo: list[BatchInput], report: BatchReport) -> dict[Path, float]:
    """Durations for the progress bar; a file that is not audio fails here, unsent."""
    durations = {}
    for item in todo:
        try:
            durations[item.source] = probe_duration(item.source)
        except AudioDecodeError as exc:
            report.failures.append((str(item.source), _reason(exc, item.source)))
    return durations


async def _worker(queue: asyncio.Queue[BatchInput], options: BatchOptions, report: BatchReport,
                  bar: BatchProgress) -> None:
    while not queue.empty():
        item = queue.get_nowait()
        file_progress = bar.file(item.source)
        try:
            transcript, audio_s = await _transcribe(item.source, options, file_progress.update)
            for path in item.transcripts:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_transcript(transcript, path)
        except (AudioDecodeError, ServerError, OSError) as exc:
            report.failures.append((str(item.source), _reason(exc, item.source)))
            file_progress.fail()
        else:
            report.transcribed += 1
            report.audio_s += audio_s
            file_progress.done(audio_s)


async def _transcribe(source: Path, options: BatchOptions, on_progress) -> tuple[Transcript, float]:
    """One file's finals, resuming after the last final received if the
    connection drops (only what was not yet returned is recognised again)."""
    resume = _Resume()
    for attempt in range(RESUMES + 1):
        try:
            async with CaptionClient.connect(options.url) as client:
                sent = _Counter()
                await client.stream(
                    _blocks(source, resume.offset_s, sent),
                    lambda message: on_progress(resume.receive(message)),
                    **_stream_config(source, options),
                )
            return Transcript(resume.finals), resume.offset_s + sent.seconds
        except ServerError as exc:
            if exc.code != "closed" or attempt == RESUMES:
                raise
            resume.restart()
    raise AssertionError("unreachable")


class _Resume:
    """Finals so far, shifted to the file's time line; where a new stream starts."""

    def __init__(self) -> None:
        self.finals: list[dict[str, Any]] = []
        self.offset_s = 0.0  # where the current stream starts in the file
        self._segments = 0  # finals received before the current stream

    def receive(self, message: dict[str, Any]) -> float:
        """Keep a final; return how far into the file recognition has come (s)."""
        if is_utterance_final(message) and (message.get("text") or "").strip():
            shift = round(self.offset_s * 1000)
            final = dict(message, segment=self._segments + int(message.get("segment", 0)))
            for key in ("start", "end"):
                if isinstance(final.get(key), (int, float)):
                    final[key] += shift
            self.finals.append(final)
        end = message.get("end")
        return self.offset_s + end / 1000 if isinstance(end, (int, float)) else self.offset_s

    def restart(self) -> None:
        ends = [final["end"] for final in self.finals if isinstance(final.get("end"), (int, float))]
        self.offset_s = max(ends, default=0) / 1000
        self._segments = len(self.finals)


class _Counter:
    def __init__(self) -> None:
        self.seconds = 0.0


async def _blocks(source: Path, skip_s: float, sent: _Counter) -> AsyncIterator[bytes]:
    """Decode in a thread, a block at a time, while the previous block is sent."""
    blocks: Iterator[bytes] = decode_blocks(source, SEND_BLOCK_SECONDS, skip_s)
    while (block := await asyncio.to_thread(next, blocks, None)) is not None:
        sent.seconds += len(block) / 2 / SAMPLE_RATE
        yield block


def _stream_config(source: Path, options: BatchOptions) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": "offline", "wav_name": source.stem,
                              "audio_fs": SAMPLE_RATE}
    if options.hotwords:
        config["hotwords"] = options.hotwords
    return config


def _reason(exc: Exception, source: Path) -> str:
    if isinstance(exc, ServerError):
        return exc.describe()
    if isinstance(exc, OSError):
        return f"{getattr(exc, 'filename', '') or ''} {exc.strerror or exc}".strip()
    return str(exc).removeprefix(f"{source}: ")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    return f"{seconds:.1f} s"
