"""`captiond mic`: live captions from a microphone in the terminal.

The current partial rewrites one terminal line; each final replaces it and
stays. Ctrl-C ends the stream the protocol's way (docs/design.md §4: `is_speaking:
false`), so the utterance being spoken is still finalised and printed; a
second Ctrl-C quits at once.

The audio source is injected (`open_stream(callback)`): a sounddevice stream
in real use, `WavInputStream` in tests and `--input-wav` demos.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from clients.audio_input import Callback, InputStream
from clients.captions import CaptionBoard, join_text
from clients.client import CaptionClient, Transcript
from clients.transcript_files import write_transcript

CLEAR_LINE = "\r\x1b[K"
DIM, RESET = "\x1b[2m", "\x1b[0m"


@dataclass
class MicOptions:
    url: str
    mode: str = "2pass"
    hotwords: str | None = None
    room: str | None = None
    speaker: str | None = None
    wav_name: str = "mic"
    outputs: list[str] = field(default_factory=list)

    def stream_config(self, rate: float) -> dict[str, Any]:
        config: dict[str, Any] = {"mode": self.mode, "wav_name": self.wav_name,
                                  "audio_fs": int(rate)}
        for key in ("hotwords", "room", "speaker"):
            if getattr(self, key):
                config[key] = getattr(self, key)
        return config


class CaptionPrinter:
    """Finals as lines; on a terminal, the live partial on one rewriting line."""

    def __init__(self, out: TextIO, live: bool | None = None) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.board = CaptionBoard()
        self._partial_shown = False

    def receive(self, message: dict[str, Any]) -> None:
        final = self.board.receive(message)
        if final is not None:
            self._write(f"{CLEAR_LINE if self._partial_shown else ''}{final.text}\n")
            self._partial_shown = False
        elif self.live and self.board.partials:
            partial = list(self.board.partials.values())[-1]
            self._write(CLEAR_LINE + _fit(partial.stable, partial.unstable))
            self._partial_shown = True

    def note(self, text: str) -> None:
        """A status line that must not be overwritten by the next partial."""
        self._write(f"{CLEAR_LINE if self._partial_shown else ''}{text}\n")
        self._partial_shown = False

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def _fit(stable: str, unstable: str) -> str:
    """The tail of the partial that fits one terminal line; the unstable tail dim."""
    width = max(10, shutil.get_terminal_size().columns - 2)
    text = join_text(stable, unstable)
    split = len(text) - len(unstable)  # where the tail that may change begins
    if len(text) > width:
        cut = len(text) - width + 1
        text, split = "…" + text[cut:], max(1, split - cut + 1)
    return f"{text[:split]}{DIM}{text[split:]}{RESET}" if split < len(text) else text


async def run_mic(
    options: MicOptions,
    open_stream: Callable[[Callback], InputStream],
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> Transcript:
    """Stream the microphone until `stop` is set (Ctrl-C sets it), then finish."""
    stop = stop or asyncio.Event()
    printer = CaptionPrinter(out)
    async with CaptionClient.connect(options.url) as client:
        blocks: asyncio.Queue[bytes] = asyncio.Queue()
        stream = open_stream(_thread_safe_put(blocks))
        restore = _on_interrupt(stop, printer) if handle_signals else lambda: None
        try:
            stream.start()
            transcript = await client.stream(
                _until(stop, blocks), printer.receive,
                **options.stream_config(stream.samplerate),
            )
        finally:
            restore()
            stream.stop()
            stream.close()
    for path in options.outputs:
        write_transcript(transcript, path)
    return transcript


def _thread_safe_put(blocks: asyncio.Queue[bytes]) -> Callback:
    """The audio thread's callback: copy the block and hand it to the event loop."""
    loop = asyncio.get_running_loop()

    def callback(indata: Any, frames: int, time: Any, status: Any) -> None:
        try:
            loop.call_soon_threadsafe(blocks.put_nowait, bytes(indata))
        except RuntimeError:  # the loop has closed: we are shutting down
            pass

    return callback


async def _until(stop: asyncio.Event, blocks: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    """Blocks as they arrive; once `stop` is set, what is queued, then the end."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            getting = asyncio.ensure_future(blocks.get())
            await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                break
            yield getting.result()
        while not blocks.empty():
            yield blocks.get_nowait()
    finally:
        stopping.cancel()


def _on_interrupt(stop: asyncio.Event, printer: CaptionPrinter) -> Callable[[], None]:
    """First Ctrl-C: finish the stream (last final still comes). Second: quit now."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers only work in the main thread
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def interrupted() -> None:
        if stop.is_set():
            task.cancel()
            return
        stop.set()
        printer.note("finishing the last utterance… (Ctrl-C again to quit now)")

    loop.add_signal_handler(signal.SIGINT, interrupted)
    return lambda: loop.remove_signal_handler(signal.SIGINT)
