"""Transcripts as files: plain text, JSON, SRT and WebVTT (docs/transcripts.md).

Times are on one timeline per export: seconds from the start of the room's
first stream (a room export) or of the stream (a stream export), so a
transcript lines up with a recording of the meeting. Subtitle cues follow
the finals' sentence timestamps, and a sentence longer than a player shows
comfortably is split again, at word boundaries where the text has them,
with its time shared in proportion to the characters.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from datetime import timedelta

import srt
import webvtt

from server.store import StoredFinal

MAX_CUE_CHARS = 84  # two lines of 42, the usual broadcast limit
MAX_CUE_SECONDS = 7.0
MIN_CUE_SECONDS = 0.04  # players drop cues that end where they start


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    speaker: str | None
    text: str


def offset_s(final: StoredFinal, origin: float) -> float:
    """Where the stream of `final` starts on the export's timeline."""
    return final.stream.started_at - origin


def span_s(final: StoredFinal, origin: float) -> tuple[float, float]:
    """The final's start and end on the timeline, whole milliseconds (what
    every format shows, so a range taken from one export selects the same in
    another)."""
    base_ms = round(offset_s(final, origin) * 1000)
    return (base_ms + final.start_ms) / 1000, (base_ms + final.end_ms) / 1000


def cues(finals: list[StoredFinal], origin: float) -> list[Cue]:
    """Subtitle cues in time order (speakers' streams interleave on the timeline)."""
    found = []
    for final in finals:
        base = span_s(final, origin)[0] - final.start_ms / 1000
        for text, start_ms, end_ms in _sentences(final):
            found += _split(base + start_ms / 1000, base + end_ms / 1000, final.speaker, text)
    return sorted(found, key=lambda cue: cue.start_s)


def _sentences(final: StoredFinal) -> list[tuple[str, int, int]]:
    sentences = [(s.get("text_seg", "") + s.get("punc", ""), int(s["start"]), int(s["end"]))
                 for s in final.sentences]
    sentences = [s for s in sentences if s[0].strip()]
    return sentences or [(final.text, final.start_ms, final.end_ms)]


def _split(start: float, end: float, speaker: str | None, text: str) -> list[Cue]:
    text = " ".join(text.split())
    end = max(end, start + MIN_CUE_SECONDS)
    pieces = max(math.ceil(len(text) / MAX_CUE_CHARS), math.ceil((end - start) / MAX_CUE_SECONDS))
    parts = _split_text(text, pieces)
    cues, done, total = [], 0, sum(len(p) for p in parts) or 1
    for part in parts:
        at = round(start + (end - start) * done / total, 3)  # whole ms, as SRT/VTT show
        done += len(part)
        cues.append(Cue(at, round(start + (end - start) * done / total, 3), speaker, part))
    return cues


def _split_text(text: str, pieces: int) -> list[str]:
    """`text` in about `pieces` parts of at most MAX_CUE_CHARS, cut at spaces
    when it has them (CJK text has none: cut anywhere)."""
    if pieces <= 1 and len(text) <= MAX_CUE_CHARS:
        return [text]
    target = min(MAX_CUE_CHARS, math.ceil(len(text) / pieces))
    words = text.split(" ") if " " in text else list(text)
    joiner = " " if " " in text else ""
    parts, current = [], ""
    for word in words:
        candidate = current + joiner + word if current else word
        if current and len(candidate) > target:
            parts.append(current)
            candidate = word
        while len(candidate) > MAX_CUE_CHARS:  # one "word" longer than a cue
            parts.append(candidate[:MAX_CUE_CHARS])
            candidate = candidate[MAX_CUE_CHARS:]
        current = candidate
    if current:
        parts.append(current)
    return parts


def to_srt(finals: list[StoredFinal], origin: float) -> str:
    subtitles = [
        srt.Subtitle(i, timedelta(seconds=c.start_s), timedelta(seconds=c.end_s),
                     f"{c.speaker}: {c.text}" if c.speaker else c.text)
        for i, c in enumerate(cues(finals, origin), start=1)
    ]
    return srt.compose(subtitles, reindex=False)


def to_vtt(finals: list[StoredFinal], origin: float) -> str:
    captions = []
    for c in cues(finals, origin):
        text = _escape(c.text)
        if c.speaker:  # a voice span: players show or style the speaker
            text = f"<v {_escape(c.speaker)}>{text}</v>"
        captions.append(webvtt.Caption(_vtt_time(c.start_s), _vtt_time(c.end_s), text))
    return webvtt.WebVTT(captions=captions).content


def _escape(text: str) -> str:
    # WebVTT cue text: & and < start markup, > ends a tag; "-->" must not appear.
    return html.escape(text, quote=False).replace("-->", "--&gt;")


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def to_txt(finals: list[StoredFinal], origin: float) -> str:
    lines = []
    for final in finals:
        at = int(span_s(final, origin)[0])
        stamp = f"{at // 3600:02d}:{at // 60 % 60:02d}:{at % 60:02d}"
        who = f" {final.speaker}:" if final.speaker else ""
        lines.append(f"[{stamp}]{who} {final.text}")
    return "\n".join(lines) + ("\n" if lines else "")


def to_json(room: str, finals: list[StoredFinal], origin: float) -> str:
    return json.dumps({
        "room": room,
        "origin": origin,  # Unix time of 0 s on this timeline
        "finals": [{
            "id": f.id,
            "stream": f.stream.key,
            "speaker": f.speaker,
            "wav_name": f.stream.wav_name,
            "text": f.text,
            "start": span_s(f, origin)[0],
            "end": span_s(f, origin)[1],
            "stream_start_ms": f.start_ms,
            "stream_end_ms": f.end_ms,
            "sentences": f.sentences,
            "recorded_at": f.recorded_at,
        } for f in finals],
    }, ensure_ascii=False, indent=1) + "\n"


def in_range(finals: list[StoredFinal], origin: float, since: float | None,
             until: float | None) -> list[StoredFinal]:
    """The finals that overlap [since, until) seconds of the timeline."""
    kept = []
    for f in finals:
        start, end = span_s(f, origin)
        if (since is None or end > since) and (until is None or start < until):
            kept.append(f)
    return kept
