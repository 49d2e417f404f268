"""Prometheus figures of one server process, for `/metrics` (docs/operations.md).

Each `CaptionServer` owns a `ServerMetrics` with its own registries, so several
servers in one process (the tests) never share counters. With `--workers N`
a front end renders its own connection figures and the engine figures the
engine process last pushed to it (server/workers.py). Gauges that mirror
live state (connections, streams, viewers, rooms) are read when scraped, not
kept up to date on every frame; the per-batch figures are observed once per
batch on the event loop, after the engine lane returns (runner.py `_record`).

Delays are measured from `job.ready_at` (the loop time at which the audio that
completed the chunk or utterance arrived) to the moment the result is handed
back to its connection, which sends it on its next turn of the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: N811
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

disable_created_metrics()  # `*_created` series: noise for a server that starts once

# Seconds: from a few ms (an idle GPU) to the seconds an overloaded CPU takes.
DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    def __init__(self) -> None:
        # Two registries: what the process holding the connections knows, and what
        # the engine process knows. One process holds both unless --workers N.
        self.front_registry = CollectorRegistry()
        self.engine_registry = CollectorRegistry()
        r = self.front_registry
        self.connections = Gauge("captiond_connections", "Open speaker connections", registry=r)
        self.streams = Gauge("captiond_live_streams", "Live (real-time) streams", registry=r)
        self.viewers = Gauge("captiond_viewers", "Room viewers connected", registry=r)
        self.rooms = Gauge("captiond_rooms", "Rooms with at least one viewer", registry=r)
        self.ready = Gauge("captiond_ready", "1 when /readyz answers 200", registry=r)
        r = self.engine_registry
        self.chunks = Counter("captiond_chunks", "Online chunks recognised (rate: chunks/s)",
                              registry=r)
        self.batch_size = Histogram("captiond_batch_size", "Jobs per engine batch", ["lane"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.step = Histogram("captiond_engine_step_seconds", "Engine time per batch",
                              ["lane"], buckets=STEP_BUCKETS, registry=r)
        self.queue_wait = Histogram("captiond_queue_wait_seconds",
                                    "From a job's audio arriving to its batch starting",
                                    ["lane"], buckets=DELAY_BUCKETS, registry=r)
        self.partial_delay = Histogram("captiond_partial_delay_seconds",
                                       "From a chunk's last audio arriving to its result",
                                       buckets=DELAY_BUCKETS, registry=r)
        self.final_delay = Histogram("captiond_final_delay_seconds",
                                     "From an utterance's last audio arriving to its final",
                                     buckets=DELAY_BUCKETS, registry=r)
        self.engine_failures = Counter("captiond_engine_failures", "Batches the engine failed",
                                       ["lane"], registry=r)
        r = self.front_registry
        self.refused = Counter("captiond_refused_connections", "Streams or connections refused",
                               ["reason"], registry=r)
        self.closed = Counter("captiond_closed_connections",
                              "Speaker connections ended, by outcome and close code",
                              ["outcome", "close_code"], registry=r)
        r = self.engine_registry
        self.model = Gauge("captiond_model_info", "The loaded engine, its models and device",
                           ["engine", "device", "online_model", "offline_model"], registry=r)

    def watch(self, connections: Callable[[], float], streams: Callable[[], float],
              viewers: Callable[[], float], rooms: Callable[[], float],
              ready: Callable[[], bool]) -> None:
        """Gauges read from the server's own state when scraped."""
        self.connections.set_function(connections)
        self.streams.set_function(streams)
        self.viewers.set_function(viewers)
        self.rooms.set_function(rooms)
        self.ready.set_function(lambda: float(ready()))

    def describe_model(self, engine: str, device: str, online: str, offline: str) -> None:
        self.model.labels(engine, device, online, offline).set(1)

    def batch_done(self, lane: str, ready_times: Iterable[float | None], size: int,
                   start: float, end: float, delivered: float) -> None:
        """One finished batch: `start`/`end` on the engine lane, `delivered` when its
        results reach the connections; all on the event loop's monotonic clock."""
        self.batch_size.labels(lane).observe(size)
        self.step.labels(lane).observe(end - start)
        if lane == "online":
            self.chunks.inc(size)
        wait, delay = self.queue_wait.labels(lane), (
            self.partial_delay if lane == "online" else self.final_delay)
        for ready_at in ready_times:
            if ready_at is not None:
                wait.observe(max(0.0, start - ready_at))
                delay.observe(max(0.0, delivered - ready_at))

    def render(self, engine_text: bytes | None = None) -> bytes:
        """Both registries; `engine_text`: the engine process's, rendered there."""
        engine = generate_latest(self.engine_registry) if engine_text is None else engine_text
        return generate_latest(self.front_registry) + engine

    def render_engine(self) -> bytes:
        return generate_latest(self.engine_registry)


def describe_model(metrics: ServerMetrics, models: Any, engine: Any) -> None:
    """`captiond_model_info` from the model config (server.config.ModelConfig)."""
    if models.engine == "whisper":
        online = offline = models.whisper.model or "tiny.en"
    else:
        online = models.paraformer.online_model
        offline = models.paraformer.offline_model or "none"
    device = str(getattr(engine, "device", None) or models.device)
    metrics.describe_model(engine.name, device, online, offline)
