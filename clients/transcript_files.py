"""Write a stream's finals as a transcript file: .txt, .json, .srt or .vtt.

Times are the finals' `start`/`end` (ms from the start of the stream, docs/design.md §4).
"""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

from clients.captions import Caption, caption_of_final
from clients.client import Transcript

SUBTITLE_LINE_CHARS = 42  # the usual subtitle line length (BBC/Netflix guidelines)
FORMATS = ("txt", "json", "srt", "vtt")


class UnknownFormat(ValueError):
    pass


def transcript_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise UnknownFormat(f"{path}: unknown transcript format (use .{', .'.join(FORMATS)})")
    return suffix


def captions_of(transcript: Transcript) -> list[Caption]:
    return [c for c in map(caption_of_final, transcript.finals) if c.text]


def write_transcript(transcript: Transcript, path: str | Path) -> None:
    """Write atomically: a transcript that exists is complete (batch reruns rely on it)."""
    path = Path(path)
    text = RENDERERS[transcript_format(path)](captions_of(transcript))
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; be a normal file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_txt(captions: Iterable[Caption]) -> str:
    captions = list(captions)
    named = len({c.who for c in captions}) > 1  # names only help when several spoke
    return "".join(f"{c.who}: {c.text}\n" if named else f"{c.text}\n" for c in captions)


def to_json(captions: Iterable[Caption]) -> str:
    segments = [
        {"segment": c.segment, "start": c.start, "end": c.end, "text": c.text}
        | ({"speaker": c.speaker} if c.speaker else {})
        for c in captions
    ]
    text = " ".join(s["text"] for s in segments)
    return json.dumps({"text": text, "segments": segments}, ensure_ascii=False, indent=2) + "\n"


def to_srt(captions: Iterable[Caption]) -> str:
    blocks = [
        f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{_cue_text(c)}\n"
        for i, c in enumerate(_timed(captions), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(captions: Iterable[Caption]) -> str:
    cues = [
        f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{_cue_text(c)}\n"
        for c in _timed(captions)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def _timed(captions: Iterable[Caption]) -> list[Caption]:
    # Subtitle players reject cues whose end is not after their start.
    return [c for c in captions if c.start is not None and c.end is not None and c.end > c.start]


def _cue_text(caption: Caption) -> str:
    return "\n".join(balanced_lines(caption.text, SUBTITLE_LINE_CHARS)) or caption.text


def balanced_lines(text: str, width: int) -> list[str]:
    """As few lines of at most `width` as possible, of similar lengths: a cue reads
    better as two half lines than as a full line and an orphaned word."""
    count = len(textwrap.wrap(text, width))
    for narrower in range(-(-len(text) // max(count, 1)), width):
        lines = textwrap.wrap(text, narrower)
        if len(lines) <= count:
            return lines
    return textwrap.wrap(text, width)


def _stamp(ms: int | None, decimal: str) -> str:
    ms = max(0, int(ms or 0))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal}{millis:03d}"


RENDERERS: dict[str, Callable[[Iterable[Caption]], str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
}
