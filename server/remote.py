"""The engine as a front-end worker sees it: a proxy in another process.

A worker (server/frontend.py) runs the usual `CaptionSession`s: resampling,
VAD and endpointing happen here. The sessions see a `RemoteEngine`, whose
pure half (`name`, `chunk_samples`, `render`) runs locally and whose
`new_stream` returns a small `StreamHandle`; the model state it stands for
lives in the engine process, keyed by the handle's id, created on the first
chunk and dropped on the last one or when the handle is garbage-collected
here (a 2pass utterance's online state is simply let go by its session).

`RemoteRunner` has the `attach/notify/detach` surface of `InferenceRunner`:
it takes each job a session has ready at once and forwards it; the engine
process batches jobs of all workers together and sends results back, which
complete the job on its session.
"""

from __future__ import annotations

import itertools
import logging
import types
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.engine_link import Link
from streaming.engine import ChunkResult, Engine, FinalResult, StreamOptions
from streaming.session import CaptionSession, Job, OnlineJob

log = logging.getLogger("captiond.remote")

_PLAIN = (int, float, str, bool, type(None))


@dataclass(frozen=True)
class EngineFace:
    """The engine's pure front half, picklable: its class and plain settings.

    `chunk_samples` and `render` depend only on those (e.g. whisper's stride),
    never on the loaded model; `check` proves that for a given engine at
    startup, so a worker never disagrees with the engine process."""

    cls: type
    name: str
    settings: dict[str, Any]

    @classmethod
    def of(cls, engine: Engine) -> EngineFace:
        engine = getattr(engine, "wrapped", engine)  # final_process.ProcessFinalEngine
        plain = {k: v for k, v in vars(engine).items() if isinstance(v, _PLAIN)}
        face = cls(type(engine), engine.name, plain)
        face.check(engine)
        return face

    def check(self, engine: Engine) -> None:
        options = StreamOptions()
        tokens = ("a", "b")
        if (self.chunk_samples(options) != engine.chunk_samples(options)
                or self.render(tokens) != engine.render(tokens)):
            raise ValueError(f"engine {engine.name!r}: chunk_samples/render depend on more "
                             "than plain settings; it cannot serve front-end workers")

    def _shim(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(**self.settings)

    def chunk_samples(self, options: StreamOptions) -> int:
        return self.cls.chunk_samples(self._shim(), options)

    def render(self, tokens: Sequence[str]) -> str:
        return self.cls.render(self._shim(), tokens)


class StreamHandle:
    """Stands for one utterance's online state in the engine process."""

    __slots__ = ("id", "options", "announced", "__weakref__")

    def __init__(self, handle_id: int, options: StreamOptions) -> None:
        self.id = handle_id
        self.options = options
        self.announced = False  # its options went with its first chunk


class RemoteEngine:
    """What a worker's sessions use as their engine (docs/design.md §2: the seam)."""

    def __init__(self, face: EngineFace, link: Link) -> None:
        self.face = face
        self.name = face.name
        self.link = link
        self._ids = itertools.count(1)

    def chunk_samples(self, options: StreamOptions) -> int:
        return self.face.chunk_samples(options)

    def render(self, tokens: Sequence[str]) -> str:
        return self.face.render(tokens)

    def new_stream(self, options: StreamOptions) -> StreamHandle:
        handle = StreamHandle(next(self._ids), options)
        # The engine process holds the state; when the session lets the
        # handle go (the utterance is over), so does the engine process.
        release = weakref.finalize(handle, self.link.send, ("release", handle.id))
        release.atexit = False  # at exit the engine process goes too
        return handle


class RemoteRunner:
    """Forwards each ready job to the engine process; completes it on the answer."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._listeners: dict[CaptionSession, Callable[[], None]] = {}
        self._in_flight: dict[int, tuple[CaptionSession, Job]] = {}
        self._ids = itertools.count(1)

    def attach(self, session: CaptionSession, on_events: Callable[[], None]) -> None:
        self._listeners[session] = on_events

    def detach(self, session: CaptionSession) -> None:
        self._listeners.pop(session, None)  # its jobs still finish (docs/design.md §8)

    def notify(self, session: CaptionSession) -> None:
        while (job := session.take_job()) is not None:
            if self.link.closed:
                session.fail(job, "the server's engine process stopped; see its log")
                continue
            job_id = next(self._ids)
            self._in_flight[job_id] = (session, job)
            self.link.send(("job", job_id, job.kind, _payload(job)))

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def on_result(self, job_id: int, result: tuple | FinalResult) -> None:
        session, job = self._in_flight.pop(job_id)
        if isinstance(job, OnlineJob):
            committed, tentative = result
            result = ChunkResult(job.request.state, committed, tentative)
        session.complete(job, result)
        self._after(session)

    def on_failure(self, job_id: int, message: str) -> None:
        session, job = self._in_flight.pop(job_id)
        session.fail(job, message)
        self._after(session)

    def fail_all(self, message: str) -> None:
        """The engine process is gone: every waiting session gets an error."""
        for job_id in list(self._in_flight):
            self.on_failure(job_id, message)

    def _after(self, session: CaptionSession) -> None:
        self.notify(session)
        listener = self._listeners.get(session)
        if listener is not None:
            listener()


def _payload(job: Job) -> tuple:
    """Audio as raw float32 bytes: pickling the numpy array itself measured ~10x
    slower (bench/frontend_cost.py). A stream's options go with its first chunk
    only; the engine process keeps them with the state."""
    request = job.request
    samples = np.ascontiguousarray(request.samples, dtype=np.float32).tobytes()
    if isinstance(job, OnlineJob):
        handle = request.state
        options = None if handle.announced else handle.options
        handle.announced = True
        return handle.id, options, samples, request.is_last
    return samples, request.options
