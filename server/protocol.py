"""Events to wire messages (docs/design.md §4) — the one place that serialises them.

Field names and meanings follow the FunASR runtime so its clients work
unchanged; `segment`, `start`, `end`, `stable`, `unstable`, `final`,
`speaker` and `room` are additive.
"""

from __future__ import annotations

import json
from typing import Any

from streaming.events import EndAcknowledged, Error, Event, Final, Partial, StreamEnd


def to_message(event: Event, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    if isinstance(event, Error):
        return {"error": event.message, "code": event.code}
    if isinstance(event, EndAcknowledged):
        return _end_acknowledgement(event)
    if isinstance(event, StreamEnd):
        message = {"mode": event.mode, "wav_name": event.wav_name, "text": "", "is_final": True}
    elif isinstance(event, Partial):
        message = _partial(event)
    else:
        message = _final(event)
    if extra:
        message.update({key: value for key, value in extra.items() if value is not None})
    return message


def dumps(message: dict[str, Any]) -> str:
    """The JSON text frame of a message; callers encode each message once."""
    return json.dumps(message, ensure_ascii=False)


def _partial(event: Partial) -> dict[str, Any]:
    message = {
        "mode": event.mode,
        "wav_name": event.wav_name,
        "text": event.text,
        # docs/design.md §4: is_final is true only on the stream's last message.
        "is_final": event.end_of_stream,
        "segment": event.segment,
        "start": event.start_ms,
        "end": event.end_ms,
        "stable": event.stable,
        "unstable": event.unstable,
    }
    if event.final:
        message["final"] = True
    return message


def _final(event: Final) -> dict[str, Any]:
    return {
        "mode": event.mode,
        "wav_name": event.wav_name,
        "text": event.text,
        "is_final": event.end_of_stream,
        "segment": event.segment,
        "start": event.start_ms,
        "end": event.end_ms,
        # FunASR's C++ 2pass server names a final's span start_time / end_time (ms).
        "start_time": event.start_ms,
        "end_time": event.end_ms,
        # FunASR sends timestamp as a JSON-encoded string of [[start, end], …] in ms.
        "timestamp": json.dumps([list(span) for span in event.token_spans_ms]),
        "stamp_sents": [
            {
                "text_seg": sentence.text,
                "punc": sentence.punc,
                "start": sentence.start_ms,
                "end": sentence.end_ms,
                "ts_list": [list(span) for span in sentence.token_spans_ms],
            }
            for sentence in event.sentences
        ],
    }


def _end_acknowledgement(event: EndAcknowledged) -> dict[str, Any]:
    # FunASR's Python server: is_final says whether the stream finished cleanly.
    message = {"mode": event.mode, "wav_name": event.wav_name,
               "is_final": event.error is None, "is_end": True}
    if event.error is not None:
        message["error"] = event.error
    return message
