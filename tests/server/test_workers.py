"""`captiond serve --workers 2`: front-end processes on one port, one engine
process; rooms and admission control work across workers (docs/workers.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import urllib.request

import pytest
from websockets.asyncio.client import connect

from clients.client import CaptionClient, ServerError
from server.config import ServerConfig
from server.frontend import WORKER_HEADER
from server.workers import MultiWorkerServer, WorkerStartError, default_workers
from streaming.admission import AdmissionPolicy
from streaming.scheduler import BatchPolicy
from tests.conftest import wav_pcm16
from tests.server.test_cli import CAPTIOND, ROOT
from tests.server.test_streaming_contract import send_frames
from tests.streaming.engine_double import StrideCountingEngine


@contextlib.asynccontextmanager
async def workers_server(engine, **overrides):
    config = ServerConfig(host="127.0.0.1", port=0, calibrate=False, workers=2, **overrides)
    server = MultiWorkerServer(config, engine)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


def ws_url(server: MultiWorkerServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def clients_on_two_workers(server, stack: contextlib.AsyncExitStack) -> list:
    """Open connections until two landed on different workers (the kernel picks)."""
    by_worker: dict[str, CaptionClient] = {}
    for _ in range(64):
        client = await stack.enter_async_context(CaptionClient.connect(ws_url(server)))
        by_worker.setdefault(client.websocket.response.headers[WORKER_HEADER], client)
        if len(by_worker) == 2:
            return list(by_worker.values())
    raise AssertionError("every connection landed on one worker")


def health(server) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=5) as reply:
        return json.loads(reply.read())


async def wait_for(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(predicate):
            await asyncio.sleep(0.05)


async def speak(client: CaptionClient, pcm: bytes, speaker: str) -> list[dict]:
    await client.start(mode="2pass", room="meet", speaker=speaker, wav_name=speaker)
    await send_frames(client, pcm, 3200)
    await client.end()
    return (await client.collect()).messages


async def viewer_finals(server, room: str, count: int) -> list[dict]:
    finals = []
    async with connect(ws_url(server, f"/rooms/{room}")) as viewer:
        while len(finals) < count:
            message = json.loads(await asyncio.wait_for(viewer.recv(), 60))
            if message["mode"] == "2pass-offline":
                finals.append(message)
    return finals


async def test_two_clients_on_different_workers_share_a_room_and_are_served(paraformer_engine):
    pcm, _ = wav_pcm16("utt01.wav")
    async with workers_server(paraformer_engine) as server, contextlib.AsyncExitStack() as stack:
        ada, grace = await clients_on_two_workers(server, stack)
        viewer = asyncio.create_task(viewer_finals(server, "meet", count=2))
        await wait_for(lambda: health(server)["viewers"] == 1)
        said = await asyncio.gather(speak(ada, pcm, "Ada"), speak(grace, pcm, "Grace"))
        seen = await viewer
        # /health from any worker: whole-server figures, pushed every 0.5 s
        await wait_for(lambda: health(server)["online_chunks"] > 0)
        # the audio frames were the workers': their loops' cost reaches /health too
        sent = 2 * (len(pcm) // 3200)
        await wait_for(lambda: health(server)["worker_frames"] >= sent)
        figures = health(server)
    for messages in said:  # both admitted, both served: partials, a final, the last flag
        assert any(m["mode"] == "2pass-online" for m in messages)
        finals = [m for m in messages if m["mode"] == "2pass-offline"]
        assert finals and all(m["text"] for m in finals)
        assert messages[-1]["is_final"] is True
        assert [m["is_final"] for m in messages].count(True) == 1
    assert {m["speaker"] for m in seen} == {"Ada", "Grace"}
    # The same utterance through the same engine: one batch or two, the same text.
    assert len({m["text"] for m in seen}) == 1
    assert figures["workers"] == 2 and figures["batches"] > 0
    assert figures["worker_frame_us"] > 0 and figures["worker_loop_cpu_s"] > 0


async def test_chunks_of_streams_on_different_workers_run_in_one_batch():
    engine = StrideCountingEngine()
    pcm, _ = wav_pcm16("utt01.wav")
    # A long deadline: the first chunk waits for the other worker's (docs/design.md §6).
    batching = BatchPolicy(max_batch_size=2, max_wait_ms=5000)
    async with workers_server(engine, batching=batching) as server, \
            contextlib.AsyncExitStack() as stack:
        clients = await clients_on_two_workers(server, stack)
        for client in clients:
            await client.start(mode="2pass")

        async def stream(client):
            await send_frames(client, pcm, 3200)
            await client.end()
            return await client.collect()

        results = await asyncio.gather(*(stream(client) for client in clients))
    assert all(result.finals for result in results)
    assert 2 in engine.step_batches


async def test_admission_counts_live_streams_of_every_worker():
    engine = StrideCountingEngine()
    async with workers_server(engine, admission=AdmissionPolicy(max_streams=1)) as server, \
            contextlib.AsyncExitStack() as stack:
        first, second = await clients_on_two_workers(server, stack)
        await first.start(mode="2pass")
        await wait_for(lambda: health(server)["live_streams"] == 1)
        await second.start(mode="2pass")
        with pytest.raises(ServerError) as refused:
            await second.collect()
        assert refused.value.code == "overloaded" and refused.value.close_code == 1013
        await first.end()
        assert (await first.collect()).messages[-1]["is_final"] is True


async def rest_of(messages) -> list[dict]:
    return [message async for message in messages]


async def test_shutdown_drains_the_streams_of_every_worker():
    pcm, _ = wav_pcm16("utt01.wav")
    async with workers_server(StrideCountingEngine()) as server, \
            contextlib.AsyncExitStack() as stack:
        clients = await clients_on_two_workers(server, stack)
        streams = []
        for client in clients:
            await client.start(mode="2pass")
            await send_frames(client, pcm[: len(pcm) * 2 // 3], 3200)  # stop mid-utterance
            streams.append(client.messages())
        for messages in streams:
            await anext(messages)  # each worker is streaming its utterance now
        drain = asyncio.create_task(server.drain())
        rests = [await rest_of(messages) for messages in streams]
        await drain
        assert all(not p.is_alive() for p in server.processes.values())
    for client, rest in zip(clients, rests):
        finals = [m for m in rest if m["mode"] == "2pass-offline"]
        assert len(finals) == 1 and finals[0]["is_final"] is True
        assert client.websocket.close_code == 1001


async def test_a_worker_that_dies_is_replaced_and_the_other_keeps_serving():
    pcm, _ = wav_pcm16("utt01.wav")
    async with workers_server(StrideCountingEngine()) as server, \
            contextlib.AsyncExitStack() as stack:
        survivor, doomed = await clients_on_two_workers(server, stack)
        await survivor.start(mode="2pass")
        await send_frames(survivor, pcm[: len(pcm) // 2], 3200)
        crashed = server.processes[int(doomed.websocket.response.headers[WORKER_HEADER])]
        crashed.kill()
        await send_frames(survivor, pcm[len(pcm) // 2:], 3200)
        await survivor.end()
        assert (await survivor.collect()).finals  # its stream never noticed
        await wait_for(lambda: crashed not in server.processes.values()
                       and server.ready_workers == 2, timeout=60)
        replacement, other = await clients_on_two_workers(server, stack)
        for client in (replacement, other):
            await client.start(mode="2pass")
            await send_frames(client, pcm, 3200)
            await client.end()
            assert (await client.collect()).finals


async def test_captiond_serve_workers_2_drains_on_sigterm(test_models_dir):
    process = await asyncio.create_subprocess_exec(
        *CAPTIOND, "serve", "--port", "0", "--device", "cpu", "--workers", "2",
        "--no-calibrate",
        "--online-model", str(test_models_dir / "paraformer-streaming"),
        "--offline-model", str(test_models_dir / "paraformer-offline"),
        "--punc-model", str(test_models_dir / "ct-punc"),
        cwd=ROOT, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})  # ours to pick
    try:
        port = await asyncio.wait_for(_listening_port(process), timeout=240)
        assert "2 front-end workers" in port[1]
        logs = asyncio.create_task(process.stderr.read())  # a full pipe would block it
        # the engine process's torch threads: the cores the two workers leave
        # (a worker knows them from the engine's first push of figures)
        figures: dict = {}

        def engine_figures_arrived() -> bool:
            url = f"http://127.0.0.1:{port[0]}/health"
            with urllib.request.urlopen(url, timeout=5) as reply:
                figures.update(json.loads(reply.read()))
            return "online_threads" in figures

        await wait_for(engine_figures_arrived)
        assert figures["online_threads"] == max(1, len(os.sched_getaffinity(0)) - 2)
        pcm, _ = wav_pcm16("utt01.wav")
        async with CaptionClient.connect(f"ws://127.0.0.1:{port[0]}") as client:
            await client.start(mode="2pass")
            await send_frames(client, pcm[: len(pcm) * 2 // 3], 3200)  # mid-utterance
            messages = client.messages()
            await anext(messages)
            process.send_signal(signal.SIGTERM)
            rest = await rest_of(messages)
        finals = [m for m in rest if m["mode"] == "2pass-offline"]
        assert len(finals) == 1 and finals[0]["is_final"] is True
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    assert "Traceback" not in (await logs).decode()


async def _listening_port(process: asyncio.subprocess.Process) -> tuple[int, str]:
    while line := (await process.stderr.readline()).decode():
        if match := re.search(r"captiond listening on ws://[\d.]+:(\d+) with", line):
            return int(match.group(1)), line
    raise AssertionError("captiond exited before listening")


async def test_workers_that_cannot_listen_stop_the_server_with_a_clear_error():
    with socket.socket() as taken:  # a port held without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = ServerConfig(host="127.0.0.1", port=taken.getsockname()[1], calibrate=False,
                              workers=2)
        server = MultiWorkerServer(config, StrideCountingEngine())
        with pytest.raises(WorkerStartError, match="exited with code 1 while starting"):
            await server.start()
    assert all(not p.is_alive() for p in server.processes.values())


@pytest.mark.parametrize("device, cores, workers",
                         [("cpu", 2, 1), ("cpu", 64, 1), ("cuda", 2, 1), ("cuda", 16, 8)])
def test_auto_workers_follow_where_the_model_runs(device, cores, workers):
    # docs/workers.md: the front end is the limit only when a GPU runs the model
    assert default_workers(device, cores) == workers
