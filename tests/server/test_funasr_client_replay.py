"""FunASR's current Python client (runtime/python/websocket/funasr_wss_client.py in
modelscope/FunASR), replayed message for message over real sockets, with and
without TLS: its config, its audio strides, `{"is_speaking": false, "is_end": true}`,
then it waits for the end acknowledgement before the next file (docs/design.md §4).
"""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from server.tls import TLSFiles
from tests.conftest import DATA, wav_pcm16
from tests.streaming.engine_double import StrideCountingEngine

ACK_TIMEOUT_S = 60.0


def funasr_config(mode: str, wav_name: str, audio_fs: int, wav_format: str) -> str:
    """The first message of the client's record_from_scp, with the hotwords of a
    hotword file as it sends them: comma-separated first words."""
    return json.dumps({
        "mode": mode, "chunk_size": [5, 10, 5], "chunk_interval": 10,
        "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 0,
        "audio_fs": audio_fs, "wav_name": wav_name, "wav_format": wav_format,
        "is_speaking": True, "hotwords": "阿里巴巴,达摩院", "itn": True,
    }, ensure_ascii=False)


async def replay(uri: str, files: list[tuple[str, bytes, int, str]], mode: str,
                 tls: bool) -> tuple[list[dict], list[dict]]:
    """Send each (wav_name, data, audio_fs, wav_format) as the client does, on one
    connection; return every message received and the acknowledgements."""
    context = None
    if tls:  # the client's own TLS settings: encrypted, certificate not checked
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    received: list[dict] = []
    acks: asyncio.Queue[dict] = asyncio.Queue()
    async with connect(uri, subprotocols=["binary"], ping_interval=None, ssl=context) as ws:
        async def receive() -> None:
            async for text in ws:
                message = json.loads(text)
                received.append(message)
                if message.get("is_end"):
                    acks.put_nowait(message)

        receiver = asyncio.create_task(receive())
        acknowledged = []
        for wav_name, data, audio_fs, wav_format in files:
            await ws.send(funasr_config(mode, wav_name, audio_fs, wav_format))
            stride = int(60 * 10 / 10 / 1000 * audio_fs * 2)  # the client's 600 ms in bytes
            for begin in range(0, len(data), stride):
                await ws.send(data[begin:begin + stride])
                await asyncio.sleep(0.001)  # the client's --send_without_sleep pace
            await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
            acknowledged.append(await asyncio.wait_for(acks.get(), ACK_TIMEOUT_S))
        await ws.close()
        await receiver
    return received, acknowledged


def is_utterance_final(message: dict) -> bool:
    if message.get("is_end"):
        return False  # the acknowledgement: its mode is the stream's own
    return message.get("mode") in ("offline", "2pass-offline") or bool(message.get("final"))


def server_uri(server, tls: bool) -> str:
    return f"{'wss' if tls else 'ws'}://127.0.0.1:{server.port}"


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("mode", ["2pass", "online", "offline"])
async def test_funasr_client_sequence_is_acknowledged_after_the_last_final(
        start_server, certificates, mode, tls):
    files = TLSFiles(str(certificates.certfile), str(certificates.keyfile))
    server = await start_server(StrideCountingEngine(), **({"tls": files} if tls else {}))
    multi, rate = wav_pcm16("multi.wav")
    utterance, rate2 = wav_pcm16("utt02.wav")
    files = [("first", multi, rate, "pcm"), ("second", utterance, rate2, "pcm")]
    received, acks = await replay(server_uri(server, tls), files, mode, tls)
    assert acks == [{"mode": mode, "wav_name": name, "is_final": True, "is_end": True}
                    for name in ("first", "second")]
    assert not [m for m in received if "error" in m]
    for name in ("first", "second"):
        stream = [i for i, m in enumerate(received) if m.get("wav_name") == name]
        ack_at = received.index(acks[0] if name == "first" else acks[1])
        finals = [i for i in stream if is_utterance_final(received[i])]
        assert finals and max(finals) < ack_at  # every final of the stream came first
        closing = [i for i in stream if received[i]["is_final"] and i != ack_at]
        assert closing == [ack_at - 1]  # the closing message, then at once the ack
    if mode == "offline" or mode == "2pass":
        spans = [(m["start"], m["end"], m["start_time"], m["end_time"])
                 for m in received if is_utterance_final(m) and m.get("text")]
        assert spans and all(s == st and e == et for s, e, st, et in spans)


@pytest.mark.parametrize("mode", ["offline", "2pass"])
async def test_funasr_others_format_is_sniffed_by_the_decoder(start_server, mode):
    # The client sends any file that is not .pcm / .wav as bytes, wav_format "others".
    engine = StrideCountingEngine()
    server = await start_server(engine)
    mp3 = (DATA / "utt01.mp3").read_bytes()
    received, acks = await replay(server_uri(server, False),
                                  [("song", mp3, 16000, "others")], mode, tls=False)
    assert acks == [{"mode": mode, "wav_name": "song", "is_final": True, "is_end": True}]
    decoded = sum(len(request.samples) for request in engine.finals)
    assert decoded > 16000 * 2  # seconds of speech decoded from the mp3 reached the model
    assert any(is_utterance_final(m) and m["text"] for m in received)


class FailingFinalEngine(StrideCountingEngine):
    def finalize(self, batch):
        raise RuntimeError("the GPU caught fire")


async def test_acknowledgement_carries_the_error_when_the_stream_failed(start_server):
    server = await start_server(FailingFinalEngine())
    pcm, rate = wav_pcm16("utt02.wav")
    async with connect(server_uri(server, False), subprotocols=["binary"]) as ws:
        await ws.send(funasr_config("2pass", "doomed", rate, "pcm"))
        await ws.send(pcm)
        await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
        messages = []
        with pytest.raises(ConnectionClosedError):
            while True:
                messages.append(json.loads(await ws.recv()))
    ack = next(m for m in messages if m.get("is_end"))
    assert ack["is_final"] is False and ack["wav_name"] == "doomed"
    assert ack["error"] and "fire" not in ack["error"]  # no internals on the wire
    assert ws.close_code == 1011


async def test_no_acknowledgement_unless_the_client_asks_for_one(start_server):
    # Clients written for the C++ runtime stop at is_final: true; an extra message
    # would be read as the next stream's.
    server = await start_server(StrideCountingEngine())
    pcm, rate = wav_pcm16("utt02.wav")
    async with connect(server_uri(server, False)) as ws:
        for name in ("one", "two"):
            await ws.send(json.dumps({"mode": "2pass", "wav_name": name, "audio_fs": rate}))
            await ws.send(pcm)
            await ws.send(json.dumps({"is_speaking": False}))
            while not (message := json.loads(await ws.recv()))["is_final"]:
                pass
            assert message["wav_name"] == name and "is_end" not in message
