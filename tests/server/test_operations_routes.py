"""/healthz, /readyz and /metrics over real sockets, with the tiny random-weight
paraformer models streaming a real recording."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from clients.client import CaptionClient
from tests.conftest import wav_pcm16
from tests.server.conftest import url

UPGRADE = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


async def http_get(server, path: str, headers: str = "") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode())
    await writer.drain()
    raw = await reader.read()  # the server closes after answering
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def scrape(server) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    status, body = await http_get(server, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


async def stream(server, pcm: bytes, mode: str = "2pass") -> None:
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode=mode, wav_name="metrics-test")
        for i in range(0, len(pcm), 3200):
            await client.send_audio(pcm[i:i + 3200])
        await client.end()
        await client.collect()


async def test_healthz_and_readyz_answer_200_once_started(start_server, paraformer_engine):
    server = await start_server(paraformer_engine)
    assert await http_get(server, "/healthz") == (200, "ok\n")
    assert await http_get(server, "/readyz") == (200, "ready\n")


async def test_metrics_counters_and_histograms_move_as_a_stream_runs(
        start_server, paraformer_engine):
    server = await start_server(paraformer_engine)
    before = await scrape(server)
    assert before[("captiond_chunks_total", ())] == 0
    assert before[("captiond_connections", ())] == 0
    info = [key for key in before if key[0] == "captiond_model_info"]
    assert len(info) == 1 and ("engine", paraformer_engine.name) in info[0][1]

    pcm, _ = wav_pcm16("utt01.wav")
    await stream(server, pcm)
    after = await scrape(server)

    chunks = after[("captiond_chunks_total", ())]
    assert chunks > 0
    assert after[("captiond_batch_size_sum", (("lane", "online"),))] == chunks
    assert after[("captiond_engine_step_seconds_count", (("lane", "online"),))] > 0
    assert after[("captiond_engine_step_seconds_count", (("lane", "final"),))] > 0
    assert after[("captiond_partial_delay_seconds_count", ())] == chunks
    assert after[("captiond_final_delay_seconds_count", ())] >= 1
    assert after[("captiond_queue_wait_seconds_count", (("lane", "online"),))] == chunks
    assert after[("captiond_closed_connections_total",
                  (("close_code", "1000"), ("outcome", "closed_by_client")))] == 1


async def test_connection_and_viewer_gauges_follow_open_sockets(start_server, paraformer_engine):
    server = await start_server(paraformer_engine)
    async with CaptionClient.connect(url(server, "/rooms/hall")) as viewer:
        async with CaptionClient.connect(url(server)) as speaker:
            await speaker.start(mode="online", room="hall")
            while not server.live_streams():
                await asyncio.sleep(0.01)
            during = await scrape(server)
        assert viewer  # still open here
    assert during[("captiond_connections", ())] == 1
    assert during[("captiond_live_streams", ())] == 1
    assert during[("captiond_viewers", ())] == 1
    assert during[("captiond_rooms", ())] == 1


async def test_readyz_is_503_while_draining_and_new_streams_are_refused(
        start_server, paraformer_engine):
    server = await start_server(paraformer_engine)
    pcm, _ = wav_pcm16("utt01.wav")
    async with CaptionClient.connect(url(server)) as client:
        await client.start(mode="2pass")
        await client.send_audio(pcm[:32000])  # an open utterance keeps the drain going
        messages = client.messages()
        await anext(messages)
        drain = asyncio.create_task(server.drain())
        await asyncio.sleep(0)  # drain() has started: the server is draining
        status, body = await http_get(server, "/readyz")
        refused_status, _ = await http_get(server, "/", UPGRADE)  # a new stream
        metrics = await scrape(server)
        _ = [message async for message in messages]
        await drain
    assert status == 503 and "draining" in body
    assert refused_status == 503
    assert metrics[("captiond_refused_connections_total", (("reason", "draining"),))] == 1
    assert metrics[("captiond_ready", ())] == 0


async def test_readyz_reports_a_failing_readiness_check(start_server, paraformer_engine):
    server = await start_server(paraformer_engine)
    server.readiness_checks.append(lambda: "store: data dir not writable")
    assert await http_get(server, "/readyz") == (503, "store: data dir not writable\n")


async def test_metrics_need_the_admin_token_once_access_control_is_on(
        start_server, paraformer_engine):
    from tests.server.test_access_control import ADMIN, POLICY, VIEWER

    server = await start_server(paraformer_engine, access=POLICY)
    assert (await http_get(server, "/metrics"))[0] == 403
    viewer = f"Authorization: Bearer {VIEWER}\r\n"
    assert (await http_get(server, "/metrics", viewer))[0] == 403
    status, body = await http_get(server, "/metrics", f"Authorization: Bearer {ADMIN}\r\n")
    assert status == 200 and "captiond_chunks_total" in body
    assert (await http_get(server, "/healthz"))[0] == 200  # probes need no token
