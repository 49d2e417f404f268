"""Hypothesis strategies for hostile client scripts (tests/server/test_protocol_fuzz.py).

A script is what one client does on one connection: text and binary frames in
any order, configs valid, mutated or absurd, frames of any size, short pauses,
and maybe an abrupt end (the socket torn down, or a close mid-stream).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import strategies as st

FRAME_LIMIT = 16_000  # the fuzzed server's max_frame_bytes (session limit, 1009)

# What JSON parsers let through that code forgets: NaN, Infinity, numbers too big
# for a float, and the like.
specials = st.sampled_from([float("nan"), float("inf"), float("-inf"), 10**400, 2**63, -0.0,
                            "", "NaN", []])

junk = st.one_of(
    specials, st.none(), st.booleans(), st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(-10, 300), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)

CONFIG_FIELDS = {
    "mode": st.sampled_from(["2pass", "online", "offline"]) | junk,
    "wav_name": st.text(max_size=16) | junk,
    "wav_format": st.sampled_from(["pcm", "pcm", "wav", "mp3", "flac", "ogg", "m4a"]) | junk,
    "audio_fs": st.sampled_from([8000, 16000, 16000, 44100, 48000]) | junk,
    "chunk_size": st.sampled_from([[5, 10, 5], [0, 8, 4], "5,10,5"]) | junk,
    "chunk_interval": st.integers(0, 20) | junk,
    "hotwords": st.sampled_from(['{"captions": 20}', "alpha beta", ""]) | st.text(max_size=30),
    "itn": st.booleans() | junk,
    "is_speaking": st.booleans() | junk,
    "room": st.sampled_from(["fuzz-room", "../etc", "a" * 80]) | junk,
    "speaker": st.text(max_size=10) | junk,
    "lang": st.sampled_from(["en", "zh"]) | junk,
    "token": junk,
}

configs = st.fixed_dictionaries({}, optional=CONFIG_FIELDS).map(json.dumps)


@st.composite
def mutated(draw, text: st.SearchStrategy[str]) -> str:
    """A text frame with a few characters replaced, cut or inserted."""
    chars = list(draw(text))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(chars)))
        chars[at:at + draw(st.integers(0, 3))] = draw(st.text(max_size=3))
    return "".join(chars)


json_values = st.recursive(
    junk, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                       max_size=3),
    max_leaves=8,
).map(json.dumps)

@dataclass(frozen=True)
class Huge:
    """A frame too big to print in a failing example: built when sent."""

    kind: str
    size: int = 0

    def frame(self) -> str | bytes:
        if self.kind == "long number":
            return '{"audio_fs": ' + "9" * 5000 + "}"
        if self.kind == "deep nesting":
            return "[" * 50_000 + "]" * 50_000
        return b"\x00" * self.size


text_frames = st.one_of(
    configs, configs, st.just('{"is_speaking": false}'), mutated(configs), json_values,
    st.text(max_size=40),
    st.sampled_from(["long number", "deep nesting"]).map(lambda kind: Huge(kind)),
)


@dataclass(frozen=True)
class Speech:
    """A slice of the speech fixture, so the VAD and the engine get real work."""

    start: int
    length: int


binary_frames = st.one_of(
    st.builds(Speech, st.integers(0, 100_000), st.integers(0, 12_000)),
    st.binary(max_size=3000),
    st.sampled_from([FRAME_LIMIT + 2, 2 * FRAME_LIMIT + 64]).map(lambda n: Huge("zeros", n)),
)


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Abort:
    """The client's end of the socket disappears (no close frame)."""


@dataclass(frozen=True)
class Close:
    """The client closes the WebSocket cleanly, whatever is still open."""


actions = st.one_of(
    text_frames, binary_frames, binary_frames,
    st.floats(0, 0.03).map(Pause),
)

scripts = st.tuples(
    st.lists(actions, max_size=10),
    st.sampled_from([None, None, None, Abort(), Close()]),
)
