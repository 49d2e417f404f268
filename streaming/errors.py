"""The core's one exception tree for bad client input (docs/design.md §8).

Each error knows the machine code and WebSocket close code it maps to, so the
session can turn it into an `Error` event without a lookup table elsewhere.
The core never lets these escape to the server: it emits `Error` events.
"""

from __future__ import annotations

# WebSocket close codes (docs/design.md §4). Defined here only: the server,
# the rooms and the clients import them from this module.
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013


class ModelNotFoundError(RuntimeError):
    """A model named in the configuration is not on disk and cannot be downloaded.
    Raised at startup only; its message says what to do (never a client error)."""


class ClientError(Exception):
    """The client sent something we cannot accept."""

    code = "bad_request"
    close_code = INVALID_PAYLOAD


class InvalidJSON(ClientError):
    code = "invalid_json"


class InvalidConfig(ClientError):
    code = "invalid_config"


class AudioBeforeConfig(ClientError):
    code = "audio_before_config"
    close_code = POLICY_VIOLATION


class InvalidAudio(ClientError):
    code = "invalid_audio"


class UnsupportedFormat(ClientError):
    code = "unsupported_format"
    close_code = UNSUPPORTED_DATA


class TooBig(ClientError):
    code = "too_big"
    close_code = MESSAGE_TOO_BIG


class Overloaded(ClientError):
    """The client sends faster than we can recognise: retry later (1013)."""

    code = "overloaded"
    close_code = TRY_AGAIN_LATER


class TooManyHotwords(TooBig):
    code = "too_many_hotwords"


class StreamTooLong(ClientError):
    """The stream reached the server's maximum duration (docs/security.md)."""

    code = "stream_too_long"
    close_code = POLICY_VIOLATION


class FasterThanRealTime(ClientError):
    """A live stream's audio ran further ahead of the clock than the server buffers."""

    code = "faster_than_real_time"
    close_code = POLICY_VIOLATION
