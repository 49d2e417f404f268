"""Protocol fuzzing against a real server over real sockets (docs/design.md §8).

Hypothesis writes hostile client scripts (tests/server/fuzz_scripts.py): text
and binary frames in any order, valid, mutated and absurd configs, frames of
every size, abrupt closes. Each runs beside a well-behaved stream. Invariants:
- the server keeps serving, and every connection is released afterwards;
- a connection that ends in an orderly way gets its results, or one clear
  error (`error`, `code`) and then a client-error close code from §4;
- the well-behaved stream gets exactly its finals, every time;
- nothing in the server's log carries a traceback or reads as an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients.client import CaptionClient
from server.app import CaptionServer
from server.config import ServerConfig
from streaming.session import SessionLimits
from tests.conftest import wav_pcm16
from tests.server.fuzz_scripts import FRAME_LIMIT, Abort, Close, Huge, Pause, Speech, scripts
from tests.streaming.engine_double import StrideCountingEngine

# A few dozen per test run; CAPTIOND_FUZZ_EXAMPLES=2000 for a longer hunt.
EXAMPLES = int(os.environ.get("CAPTIOND_FUZZ_EXAMPLES", "40"))
CLIENT_ERROR_CLOSES = {1003, 1007, 1008, 1009, 1013}  # never 1011: that is our failure
DONE = "fuzz-done"  # the wav_name of the empty stream that marks the end of a script
SPEECH, _ = wav_pcm16("multi.wav")
GOOD, _ = wav_pcm16("utt01.wav")


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def alarming(self, since: int = 0) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records[since:]
                if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()]


class ServerThread:
    """A real server on its own event loop and thread, shared by every example."""

    def __init__(self) -> None:
        self.server: CaptionServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        config = ServerConfig(host="127.0.0.1", port=0, calibrate=False,
                              limits=SessionLimits(max_frame_bytes=FRAME_LIMIT))
        self.server = CaptionServer(config, StrideCountingEngine())
        await self.server.start()
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await self.server.stop()

    def start(self) -> str:
        self._thread.start()
        assert self._ready.wait(30), "the server did not start"
        return f"ws://127.0.0.1:{self.server.port}/"

    def open_connections(self) -> int:
        return len(self.server.connections)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@dataclass(repr=False)
class Fuzzed:
    address: str
    expected: list[dict]  # the well-behaved stream's finals, from a clean run
    log: RecordingHandler

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"<server at {self.address}>"


@pytest.fixture(scope="module")
def fuzzed():
    log = RecordingHandler()
    root = logging.getLogger()
    level, root.level = root.level, logging.INFO
    root.addHandler(log)
    thread = ServerThread()
    address = thread.start()
    expected = asyncio.run(good_finals(address))
    assert [m["segment"] for m in expected] == [0]
    yield Fuzzed(address, expected, log)
    try:
        asyncio.run(connections_released(thread))
        assert log.alarming() == []
    finally:
        thread.stop()
        root.removeHandler(log)
        root.level = level


async def connections_released(thread: ServerThread) -> None:
    async with asyncio.timeout(30):
        while thread.open_connections():
            await asyncio.sleep(0.05)


async def good_finals(address: str) -> list[dict]:
    async with CaptionClient.connect(address) as client:
        await client.start(mode="2pass", wav_name="good")
        for i in range(0, len(GOOD), 3200):
            await client.send_audio(GOOD[i : i + 3200])
        await client.end()
        return (await client.collect()).finals


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(script=scripts)
def test_hostile_clients_get_results_or_a_clear_error_and_never_disturb_others(fuzzed, script):
    logged_before = len(fuzzed.log.records)
    asyncio.run(asyncio.wait_for(play(fuzzed.address, fuzzed.expected, script), 60))
    assert fuzzed.log.alarming(since=logged_before) == []


async def play(address: str, expected: list[dict], script) -> None:
    good = asyncio.create_task(good_finals(address))
    await hostile(address, *script)
    assert await good == expected


async def hostile(address: str, actions: list, ending) -> None:
    ws = await connect(address, max_size=None)
    received: list[dict] = []
    reader = asyncio.create_task(read_until_done(ws, received))
    over_transport_limit = False
    try:
        for action in actions:
            if isinstance(action, Pause):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Speech):
                await ws.send(SPEECH[action.start : action.start + action.length])
            else:
                frame = action.frame() if isinstance(action, Huge) else action
                size = len(frame.encode() if isinstance(frame, str) else frame)
                over_transport_limit |= size > 2 * FRAME_LIMIT  # server.app: websockets' own
                await ws.send(frame)
        if isinstance(ending, Abort):
            ws.transport.abort()
        elif isinstance(ending, Close):
            await ws.close()
        else:  # orderly: end what is open, then an empty stream marks the end
            await ws.send('{"is_speaking": false}')
            await ws.send(json.dumps({"mode": "offline", "wav_name": DONE, "is_speaking": False}))
    except ConnectionClosed:
        ending = None  # the server closed first: it must have said why
    await reader
    if not isinstance(ending, Abort | Close):
        check_orderly_end(received, ws.close_code, over_transport_limit)
    await ws.close()


async def read_until_done(ws, received: list[dict]) -> None:
    try:
        while True:
            received.append(json.loads(await ws.recv()))
            last = received[-1]
            if last.get("wav_name") == DONE and last.get("is_final"):
                return
    except ConnectionClosed:
        return


def check_orderly_end(received: list[dict], close_code: int | None, oversized: bool) -> None:
    """Results up to the end marker, or one clear error and a client-error close."""
    errors = [m for m in received if "error" in m]
    if not errors and received and received[-1].get("wav_name") == DONE:
        return
    if not errors:  # closed without a word: only the transport's own frame limit does that
        assert oversized and close_code == 1009, (received, close_code)
        return
    assert errors == [received[-1]], received  # nothing after the error
    assert isinstance(errors[0]["error"], str) and errors[0]["error"]
    assert isinstance(errors[0]["code"], str) and errors[0]["code"] != "internal_error"
    assert close_code in CLIENT_ERROR_CLOSES, (errors[0], close_code)
