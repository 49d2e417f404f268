"""A client's stream config (docs/design.md §4 step 1), parsed and validated.

FunASR clients send a JSON object first; we accept exactly its fields, plus the
additive `room`, `token`, `speaker`, `lang`. Unknown keys are ignored so newer
clients keep working. Every rejection names the field and what was expected.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streaming.engine import StreamOptions
from streaming.errors import InvalidConfig, InvalidJSON

MODES = ("online", "offline", "2pass")
PCM = "pcm"
# Container formats decoded server-side (PyAV) once the whole file has arrived.
# "others" is what FunASR's client sends for any file that is not .pcm or .wav:
# the decoder sniffs the container from its bytes whatever the name says.
ENCODED_FORMATS = ("wav", "mp3", "flac", "m4a", "mp4", "aac", "ogg", "opus", "webm", "others")
MIN_RATE, MAX_RATE = 8000, 192000
MAX_CHUNK_UNITS = 100  # 6 s chunks; beyond that "streaming" stops meaning anything
MAX_HOTWORDS = 200  # the default of SessionLimits.max_hotwords; the session checks it
MAX_HOTWORD_CHARS = 64
ROOM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # it becomes a URL path segment


@dataclass(frozen=True)
class StreamConfig:
    mode: str = "2pass"
    wav_name: str = "demo"
    wav_format: str = PCM
    audio_fs: int = 16000
    chunk_size: tuple[int, int, int] = (5, 10, 5)
    hotwords: Mapping[str, int] = field(default_factory=dict)
    itn: bool = True
    room: str | None = None
    token: str | None = None
    speaker: str | None = None
    lang: str | None = None

    @property
    def options(self) -> StreamOptions:
        return StreamOptions(self.chunk_size, dict(self.hotwords), self.itn, self.lang)

    @property
    def encoded(self) -> bool:
        return self.wav_format != PCM


def parse_message(text: str) -> dict[str, Any]:
    """Decode a client text frame; it must be one JSON object."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, huge numbers
        raise InvalidJSON(f"text frames must be JSON objects: {exc}") from None
    if not isinstance(message, dict):
        raise InvalidJSON("text frames must be JSON objects, got " + type(message).__name__)
    return message


def parse_config(message: Mapping[str, Any]) -> StreamConfig:
    return StreamConfig(
        mode=_mode(message.get("mode", "2pass")),
        wav_name=_short_text(message, "wav_name", "demo"),
        wav_format=_wav_format(message.get("wav_format", PCM)),
        audio_fs=_audio_fs(message.get("audio_fs", 16000)),
        chunk_size=_chunk_size(message.get("chunk_size", [5, 10, 5])),
        hotwords=parse_hotwords(message.get("hotwords", "")),
        itn=_flag(message, "itn", True),
        room=_room(message),
        token=_optional_text(message, "token"),
        speaker=_optional_text(message, "speaker"),
        lang=_optional_text(message, "lang"),
    )


def _mode(value: Any) -> str:
    if value not in MODES:
        raise InvalidConfig(f"mode must be one of {', '.join(MODES)}; got {value!r}")
    return value


def _wav_format(value: Any) -> str:
    fmt = str(value).lower().lstrip(".") if isinstance(value, str) else value
    if fmt != PCM and fmt not in ENCODED_FORMATS:
        allowed = ", ".join((PCM, *ENCODED_FORMATS))
        raise InvalidConfig(f"wav_format must be one of {allowed}; got {value!r}")
    return fmt


def _audio_fs(value: Any) -> int:
    if not _finite_number(value) or value != int(value):
        raise InvalidConfig(f"audio_fs must be an integer sample rate in Hz; got {value!r}")
    if not MIN_RATE <= value <= MAX_RATE:
        raise InvalidConfig(f"audio_fs must be between {MIN_RATE} and {MAX_RATE} Hz; got {value}")
    return int(value)


def _chunk_size(value: Any) -> tuple[int, int, int]:
    # FunASR clients send a list; some scripts send "5,10,5".
    if isinstance(value, str):
        value = value.split(",")
    parts = [_whole_number(part) for part in value] if isinstance(value, list | tuple) else []
    if len(parts) != 3 or None in parts or parts[0] < 0 or parts[2] < 0 or not (
        0 < parts[1] <= MAX_CHUNK_UNITS
    ):
        raise InvalidConfig(
            "chunk_size must be three integers [left, chunk, right] in 60 ms units with "
            f"0 < chunk <= {MAX_CHUNK_UNITS}, e.g. [5, 10, 5]; got {value!r}"
        )
    if parts[2] == 0:
        # FunASR's streaming Paraformer slices its caches with -right: at 0 it keeps no
        # attention look-back, and with left 0 too its overlap grows every stride.
        raise InvalidConfig(
            "chunk_size needs a right (look-ahead) context of at least 1: with [left, chunk, "
            "0] the streaming model keeps no look-back; use e.g. [5, 10, 5] or [0, 10, 5]; "
            f"got {value!r}"
        )
    return parts[0], parts[1], parts[2]


def _whole_number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_hotwords(value: Any) -> dict[str, int]:
    """Hotwords as FunASR sends them: a JSON string of {word: weight}, a
    comma-separated list (FunASR's current file client; phrases may hold
    spaces), a plain space/newline separated list (weight 20, FunASR's
    default), or a dict."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{"):
            try:
                value = json.loads(stripped)
            except (ValueError, RecursionError) as exc:  # ValueError: a 5000-digit number
                raise InvalidConfig(f"hotwords is not valid JSON: {exc}") from None
        elif "," in stripped:
            value = {word.strip(): 20 for word in stripped.split(",") if word.strip()}
        else:
            value = {word: 20 for word in stripped.split()}
    if not isinstance(value, dict):
        raise InvalidConfig('hotwords must be a JSON object {"word": weight} or a word list')
    hotwords = {}
    for word, weight in value.items():
        bad_weight = not _finite_number(weight)
        if not word.strip() or len(word) > MAX_HOTWORD_CHARS or bad_weight:
            raise InvalidConfig(
                f"hotword {word!r}: needs 1..{MAX_HOTWORD_CHARS} characters and a numeric weight"
            )
        hotwords[word.strip()] = int(weight)
    return hotwords


def _finite_number(value: Any) -> bool:
    """A JSON number we can compute with: JSON (Python's) also allows NaN and Infinity."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or isinstance(value, float) and math.isfinite(value)


def _flag(message: Mapping[str, Any], key: str, default: bool) -> bool:
    value = message.get(key, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidConfig(f"{key} must be true or false; got {value!r}")
    return value


def _room(message: Mapping[str, Any]) -> str | None:
    room = _optional_text(message, "room") or None
    if room is not None and not ROOM_NAME.fullmatch(room):
        raise InvalidConfig(f"room must be 1-64 letters, digits, '_', '-' or '.'; got {room!r}")
    return room


def _optional_text(message: Mapping[str, Any], key: str) -> str | None:
    if message.get(key) is None:
        return None
    return _short_text(message, key, "")


def _short_text(message: Mapping[str, Any], key: str, default: str) -> str:
    value = message.get(key, default)
    if not isinstance(value, str) or len(value) > 256:
        raise InvalidConfig(f"{key} must be a string of at most 256 characters")
    return value
