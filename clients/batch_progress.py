"""The one progress bar of a batch: files done, audio hours done, speed, ETA.

The bar counts audio seconds, moved by each final as it arrives (its `end`),
so a long file shows progress while it is recognised; the ETA follows.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


class BatchProgress:
    def __init__(self, status: Console, files: int, audio_s: float, enabled: bool) -> None:
        self.files, self.files_done = files, 0
        self.audio_total_s = audio_s
        self._started = time.monotonic()
        self._progress = Progress(
            TextColumn("{task.fields[files]}"),
            BarColumn(),
            TextColumn("{task.fields[hours]}"),
            TextColumn("{task.fields[speed]}"),
            TimeRemainingColumn(),
            console=status,
            transient=True,
            disable=not (enabled and status.is_terminal),  # a bar in a log file is noise
        )
        self._task = self._progress.add_task("batch", total=max(audio_s, 1e-9), **self._fields(0))
        self._per_file: dict[Path, float] = {}

    def __enter__(self) -> BatchProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def file(self, source: Path) -> FileProgress:
        return FileProgress(self, source)

    def _set(self, source: Path, seconds: float, finished: bool = False) -> None:
        self._per_file[source] = seconds
        self.files_done += finished
        done = sum(self._per_file.values())
        self._progress.update(self._task, completed=done, **self._fields(done))

    def _fields(self, done_s: float) -> dict[str, str]:
        elapsed = time.monotonic() - self._started
        speed = done_s / elapsed if elapsed > 0 else 0.0
        return {"files": f"{self.files_done}/{self.files} files",
                "hours": f"{done_s / 3600:.2f}/{self.audio_total_s / 3600:.2f} h audio",
                "speed": f"{speed:.1f}× real time"}


class FileProgress:
    """How far recognition of one file has come, in audio seconds."""

    def __init__(self, bar: BatchProgress, source: Path) -> None:
        self.bar, self.source = bar, source

    def update(self, seconds: float) -> None:
        self.bar._set(self.source, seconds)

    def done(self, audio_s: float) -> None:
        self.bar._set(self.source, audio_s, finished=True)

    def fail(self) -> None:
        self.bar._set(self.source, 0.0, finished=True)
