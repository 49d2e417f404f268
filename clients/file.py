"""`captiond file`: caption an audio or video file and write transcripts.

PyAV decodes anything FFmpeg reads to 16 kHz mono PCM16 on the client, so the
server only ever sees PCM (docs/design.md §4). Live modes (online/2pass) are paced at
real time by default, as a live source would be; offline mode sends as fast as
the server takes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from clients.audio_input import SAMPLE_RATE, decode_audio, paced_blocks
from clients.captions import CaptionBoard
from clients.client import CaptionClient, Transcript
from clients.transcript_files import transcript_format, write_transcript


@dataclass
class FileOptions:
    path: str
    url: str
    mode: str = "2pass"
    realtime: bool | None = None  # None: real time for online/2pass, not for offline
    hotwords: str | None = None
    room: str | None = None
    speaker: str | None = None
    outputs: list[str] = field(default_factory=list)
    progress: bool = True

    @property
    def paced(self) -> bool:
        return self.mode != "offline" if self.realtime is None else self.realtime

    def stream_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"mode": self.mode, "wav_name": Path(self.path).stem,
                                  "audio_fs": SAMPLE_RATE}
        for key in ("hotwords", "room", "speaker"):
            if getattr(self, key):
                config[key] = getattr(self, key)
        return config


async def transcribe_file(options: FileOptions, console: Console | None = None,
                          status: Console | None = None) -> Transcript:
    """Decode, stream, print finals to `console`, write the transcripts.

    `status` (stderr by default) shows the progress bar, so stdout stays clean
    for the finals (`captiond file talk.mp4 > talk.txt` works)."""
    for path in options.outputs:
        transcript_format(path)  # an unknown extension fails now, not after an hour
    console = console or Console(highlight=False)
    status = status or Console(stderr=True)
    pcm = await asyncio.to_thread(decode_audio, options.path)
    async with CaptionClient.connect(options.url) as client:
        with _progress(status, options.progress) as progress:
            task = progress.add_task(Path(options.path).name, total=len(pcm) / 2 / SAMPLE_RATE)
            transcript = await client.stream(
                paced_blocks(pcm, SAMPLE_RATE, options.paced,
                             lambda seconds: progress.update(task, completed=seconds)),
                _final_printer(console, progress),
                **options.stream_config(),
            )
    for path in options.outputs:
        write_transcript(transcript, path)
    return transcript


def _progress(status: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=status,
        transient=True,
        disable=not (enabled and status.is_terminal),  # a bar in a log file is noise
        # Finals are printed explicitly (see _final_printer); a redirect would send
        # stdout to stderr when only stderr is a terminal.
        redirect_stdout=False,
        redirect_stderr=False,
    )


def _final_printer(console: Console, progress: Progress) -> Callable[[dict[str, Any]], None]:
    board = CaptionBoard()
    # Both on the terminal: print through the bar's console so the bar stays below
    # the text. Otherwise (stdout redirected) finals go to stdout, the bar to stderr.
    via_bar = console.is_terminal and progress.console.is_terminal

    def on_message(message: dict[str, Any]) -> None:
        final = board.receive(message)
        if final is None:
            return
        line = f"{final.who}: {final.text}" if message.get("room") else final.text
        (progress.console if via_bar else console).print(line, soft_wrap=True)

    return on_message
