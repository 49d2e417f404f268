"""Events the core emits, as frozen dataclasses (docs/design.md §2).

The server turns each one into exactly one wire message (docs/design.md §4) in
`server/protocol.py`; nothing else serialises them. `StreamStarted` is the
exception: it never goes on the wire; the server decides admission on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.engine import SentenceStamp


@dataclass(frozen=True)
class Partial:
    """Live text of the utterance in progress.

    `text` is only what was newly committed since the previous partial of the
    same utterance (FunASR clients append it); `stable` is everything committed
    so far and `unstable` the tail that may still change (displays render these).
    """

    mode: str  # wire mode: "online" or "2pass-online"
    wav_name: str
    segment: int
    text: str
    stable: str
    unstable: str
    start_ms: int
    end_ms: int
    final: bool = False  # online mode: last message of this utterance
    end_of_stream: bool = False


@dataclass(frozen=True)
class Final:
    """The corrected whole utterance from the final pass; replaces its partials."""

    mode: str  # "offline" or "2pass-offline"
    wav_name: str
    segment: int
    text: str
    start_ms: int
    end_ms: int
    token_spans_ms: tuple[tuple[int, int], ...] = ()  # from stream start
    sentences: tuple[SentenceStamp, ...] = ()  # times from stream start
    end_of_stream: bool = False


@dataclass(frozen=True)
class StreamEnd:
    """Closes a stream that ended with no utterance open (docs/design.md §4: empty text)."""

    mode: str
    wav_name: str


@dataclass(frozen=True)
class EndAcknowledged:
    """Answers an end that carried `is_end`, after the stream's last final, as
    FunASR's Python server does; `error` says why the stream failed, if it did."""

    mode: str  # the stream's own mode ("2pass", not "2pass-offline"), as FunASR sends it
    wav_name: str
    error: str | None = None


@dataclass(frozen=True)
class StreamStarted:
    """A stream began: the server authorises it and, if live (real-time), admits
    or refuses it (docs/design.md §8)."""

    mode: str  # the config's mode
    wav_name: str
    live: bool = True  # online / 2pass; offline uploads are not real-time


@dataclass(frozen=True)
class Error:
    """The client sent something we cannot take, or we failed; the socket closes."""

    code: str  # machine-readable, e.g. "invalid_config"
    message: str  # human-readable, safe to show a user
    close_code: int  # docs/design.md §4: 1003, 1007, 1008, 1009, 1011, 1013


Event = Partial | Final | StreamEnd | EndAcknowledged | Error | StreamStarted
