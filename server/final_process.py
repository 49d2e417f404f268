"""The final pass in a process of its own (`--final-pass process`).

Why: the online lane and the final lane are both mostly Python around small
tensor calls (FunASR's `generate`, timestamps and CT-Transformer punctuation
on one side, the batched online step on the other), so in one process they
take turns on the GIL with each other and with the event loop. Measured on
the 2-core machine with the tiny model, an online step of twice the rows took
4.5x longer while finals ran beside it, whatever the thread counts
(docs/workers.md). A child process has its own interpreter.

The child loads the offline and punctuation models itself (the parent then
loads only the online model) and answers one batch at a time over a pipe:
`FinalRequest`s in, `FinalResult`s or the exception out. The runner's final
lane calls `finalize` on its thread, which waits on the pipe without holding
the GIL. A child that dies is started again once per batch, so a crash costs
the batch's wait, not its finals.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from server.config import ModelConfig
from server.logs import LogOptions, active_options, setup_logging
from streaming.engine import ChunkRequest, ChunkResult, Engine, FinalRequest, FinalResult

log = logging.getLogger("captiond.final")

READY_TIMEOUT_S = 600.0  # loading real models from a slow disk


class FinalPassError(RuntimeError):
    """The final-pass process could not load its models or died."""


def _serve_finals(conn: Connection, models: ModelConfig, threads: int | None,
                  log_options: LogOptions) -> None:
    """The child: load, say ready (or why not), then answer batches until None."""
    # A spawned child starts with default logging: without this, FunASR's
    # loading chatter reaches stderr as plain text, in JSON mode too.
    setup_logging(log_options, tag="final")
    # Ctrl-C reaches the whole process group: the parent drains and then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        from server.engines import load_paraformer_final

        final_pass = load_paraformer_final(models.paraformer, models.device)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails start
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            batch = conn.recv()
        except EOFError:  # the parent is gone
            return
        if batch is None:
            return
        try:
            conn.send(("ok", final_pass.finalize(batch)))
        except Exception as exc:  # noqa: BLE001 - the parent's lane isolates the bad job
            conn.send(("raised", _picklable(exc)))


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - any unpicklable exception becomes its text
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class FinalPassProcess:
    """The parent's handle: `start`, `finalize` (blocking; from one lane thread), `close`."""

    def __init__(self, models: ModelConfig, threads: int | None) -> None:
        self.models = models
        self.threads = threads
        self._context = multiprocessing.get_context("spawn")  # no forked torch or CUDA state
        self._process: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def start(self) -> None:
        """Spawn the child; returns at once (`wait_ready` waits for its models)."""
        parent, child = self._context.Pipe()
        self._process = self._context.Process(
            target=_serve_finals, args=(child, self.models, self.threads, active_options()),
            name="captiond-final", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        assert self._conn is not None
        if not self._conn.poll(timeout_s):
            self.close()
            raise FinalPassError(f"the final-pass process did not load in {timeout_s:g} s")
        try:
            status, detail = self._conn.recv()
        except EOFError:
            status, detail = "error", f"it exited with code {self._process.exitcode}"
        if status != "ready":
            self.close()
            raise FinalPassError(f"the final-pass process could not start: {detail}")
        log.info("final pass running in process %d", self._process.pid)

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        with self._lock:
            try:
                return self._ask(list(batch))
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as exc:
                log.error("the final-pass process died (%s): starting it again", exc)
            self.restarts += 1
            self._stop()
            self.start()
            self.wait_ready()
            try:
                return self._ask(list(batch))
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as exc:
                raise FinalPassError(
                    f"the final-pass process died twice on one batch: {exc}") from exc

    def _ask(self, batch: list[FinalRequest]) -> list[FinalResult]:
        assert self._conn is not None
        self._conn.send(batch)
        status, payload = self._conn.recv()
        if status == "raised":
            raise payload
        return payload

    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _stop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            self._process = None

    def close(self) -> None:
        with self._lock:
            self._stop()


class ProcessFinalEngine:
    """An `Engine` whose online pass runs here and whose final pass runs in the child.
    `wrapped` is the in-process engine (remote.EngineFace reads its settings)."""

    def __init__(self, wrapped: Engine, finals: FinalPassProcess) -> None:
        self.wrapped = wrapped
        self.finals = finals
        self.name = wrapped.name

    def chunk_samples(self, options) -> int:
        return self.wrapped.chunk_samples(options)

    def new_stream(self, options) -> Any:
        return self.wrapped.new_stream(options)

    def step(self, batch: Sequence[ChunkRequest]) -> list[ChunkResult]:
        return self.wrapped.step(batch)

    def finalize(self, batch: Sequence[FinalRequest]) -> list[FinalResult]:
        return self.finals.finalize(batch)

    def render(self, tokens: Sequence[str]) -> str:
        return self.wrapped.render(tokens)

    def close(self) -> None:
        self.finals.close()
