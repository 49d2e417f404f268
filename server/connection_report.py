"""What one speaker connection did: its one log line at the end, and its counts
in `/metrics` (docs/operations.md).

Transcript text never reaches the log from here unless `--log-transcripts`
turned the `captiond.transcripts` logger on (server/logs.py); the end-of-
connection line carries only ids, counts and durations.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from streaming.config import StreamConfig
from streaming.events import Error, Event, Final, Partial

log = logging.getLogger("captiond.connection")
transcripts = logging.getLogger("captiond.transcripts")

_ids = itertools.count(1)
NORMAL_CLOSURE, GOING_AWAY = 1000, 1001


class ConnectionReport:
    def __init__(self, peer: Any, metrics: Any | None = None) -> None:
        self.id = next(_ids)  # the connection in log lines (streams may be several)
        self.peer = peer
        self.metrics = metrics  # server.metrics.ServerMetrics, when the server has one
        self.stream_id = "-"  # the last stream's wav_name
        self.streams = 0
        self.audio_s = 0.0
        self.partials = 0
        self.finals = 0
        self.error: Error | None = None
        self._config: StreamConfig | None = None

    def audio(self, size: int, config: StreamConfig | None) -> None:
        if config is None:
            return
        if config is not self._config:  # each config starts a stream
            self._config = config
            self.streams += 1
            self.stream_id = config.wav_name
        if not config.encoded:  # PCM16 at the client's rate
            self.audio_s += size / (2 * config.audio_fs)

    def refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refused.labels(reason).inc()

    def saw(self, event: Event) -> None:
        """An event on its way to the client (and the room)."""
        if isinstance(event, Partial):
            self.partials += 1
            if event.final:
                self.finals += 1  # online mode: the utterance's last partial is its final
        elif isinstance(event, Final):
            self.finals += 1
            if transcripts.isEnabledFor(logging.INFO):
                transcripts.info("%s #%d [%d-%d ms]: %s", event.wav_name, event.segment,
                                 event.start_ms, event.end_ms, event.text)
        elif isinstance(event, Error):
            self.error = event

    def finish(self, drained: bool, client_close_code: int | None) -> None:
        """The connection ended: one log line, and the closed-connections counter."""
        if self.error is not None:
            outcome, code = self.error.code, self.error.close_code
        elif drained:
            outcome, code = "drained", GOING_AWAY
        elif client_close_code in (NORMAL_CLOSURE, GOING_AWAY):
            outcome, code = "closed_by_client", client_close_code
        else:  # the socket dropped without a close frame (1006), or closed oddly
            outcome, code = "disconnected", client_close_code
        if self.metrics is not None:
            self.metrics.closed.labels(outcome, str(code)).inc()
        log.info("connection %d ended: stream=%s outcome=%s close_code=%s streams=%d "
                 "audio_s=%.1f partials=%d finals=%d peer=%s", self.id, self.stream_id,
                 outcome, code, self.streams, self.audio_s, self.partials, self.finals,
                 self.peer, extra={"fields": {
                     "event": "connection_end", "connection": self.id,
                     "stream": self.stream_id, "outcome": outcome, "close_code": code,
                     "streams": self.streams, "audio_s": round(self.audio_s, 2),
                     "partials": self.partials, "finals": self.finals,
                     "peer": str(self.peer)}})
