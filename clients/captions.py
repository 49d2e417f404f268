"""Caption state for displays: server messages in, finished lines and live partials out.

The terminal views (`captiond mic`, `captiond watch`) keep one `CaptionBoard`;
`web_demo/captions.js` is its browser twin and follows the same rules:

- a live partial belongs to one utterance of one speaker, keyed by
  (`speaker` or `wav_name`, `segment`); its final replaces it (docs/design.md §4);
- finals are kept in order and deduplicated by (speaker, segment, start, text),
  so a viewer that reconnects and gets the room's history replayed shows each
  final once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from clients.client import is_utterance_final

Key = tuple[str, int]


@dataclass(frozen=True)
class Caption:
    """One line on a display: a finished utterance, or the live one."""

    who: str  # speaker name, else wav_name: whose utterance this is
    segment: int
    text: str
    stable: str = ""  # partials only: committed words …
    unstable: str = ""  # … and the tail that may still change
    start: int | None = None
    end: int | None = None
    final: bool = False
    speaker: str = ""  # the display name the speaker gave, if any


def join_text(left: str, right: str) -> str:
    """Join two pieces of caption text: a space between Latin words, none in CJK."""
    if not left or not right:
        return left + right
    if left[-1].isspace() or right[0].isspace():
        return left + right
    if left[-1].isascii() and right[0].isascii() and right[0].isalnum():
        return f"{left} {right}"
    return left + right


def speaker_of(message: dict[str, Any]) -> str:
    return str(message.get("speaker") or message.get("wav_name") or "")


def utterance_text(message: dict[str, Any]) -> str:
    """The whole text of an utterance final: `text` in (2pass-)offline finals,
    the committed hypothesis (`stable`) on an online-mode `final: true` partial."""
    if message.get("mode") == "online" and "stable" in message:
        return str(message["stable"])
    return str(message.get("text") or "")


def caption_of_final(message: dict[str, Any]) -> Caption:
    return Caption(
        who=speaker_of(message),
        segment=int(message.get("segment", -1)),
        text=utterance_text(message).strip(),
        start=message.get("start"),
        end=message.get("end"),
        final=True,
        speaker=str(message.get("speaker") or ""),
    )


class CaptionBoard:
    """Finished lines (the last `max_finals`) plus each speaker's live partial."""

    def __init__(self, max_finals: int = 200) -> None:
        self.finals: deque[Caption] = deque(maxlen=max_finals)
        self.partials: dict[Key, Caption] = {}
        self._seen: set[tuple[str, int, Any, str]] = set()

    def receive(self, message: dict[str, Any]) -> Caption | None:
        """Apply one server message; return the final it added, if any."""
        if "error" in message or "mode" not in message:
            return None
        if is_utterance_final(message):
            return self._final(message)
        if message["mode"] in ("online", "2pass-online"):
            self._partial(message)
        return None

    def _final(self, message: dict[str, Any]) -> Caption | None:
        caption = caption_of_final(message)
        self.partials.pop((caption.who, caption.segment), None)
        seen = (caption.who, caption.segment, caption.start, caption.text)
        if not caption.text or seen in self._seen:
            return None  # empty utterance, or replayed history already shown
        self._seen.add(seen)
        self.finals.append(caption)
        return caption

    def _partial(self, message: dict[str, Any]) -> None:
        key = (speaker_of(message), int(message.get("segment", 0)))
        previous = self.partials.get(key)
        if "stable" in message or "unstable" in message:
            stable, unstable = message.get("stable", ""), message.get("unstable", "")
        else:  # plain FunASR server: `text` is a delta to append
            stable = join_text(previous.stable if previous else "", message.get("text", ""))
            unstable = ""
        self.partials[key] = Caption(key[0], key[1], join_text(stable, unstable), stable,
                                     unstable, start=message.get("start"))

    def clear_partials(self) -> None:
        """A connection dropped: partials will not be finished on it."""
        self.partials.clear()

    @property
    def speakers(self) -> set[str]:
        return {c.who for c in self.finals} | {c.who for c in self.partials.values()}
