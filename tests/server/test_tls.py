"""TLS on the one port: wss:// and https:// with a certificate the test makes
(docs/security.md)."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request

import pytest
from websockets.asyncio.client import connect

from clients.client import CaptionClient
from server.tls import TLSConfigError, TLSFiles
from tests.conftest import wav_pcm16
from tests.streaming.engine_double import StrideCountingEngine


@pytest.fixture
async def tls_server(start_server, certificates):
    files = TLSFiles(str(certificates.certfile), str(certificates.keyfile))
    return await start_server(StrideCountingEngine(), tls=files)


async def test_wss_stream_verifies_against_the_test_ca(tls_server, certificates):
    pcm, rate = wav_pcm16("utt02.wav")
    uri = f"wss://localhost:{tls_server.port}/"
    async with CaptionClient.connect(uri, ssl=certificates.client_context()) as client:
        await client.start(mode="2pass", wav_name="secure", audio_fs=rate)
        await client.send_audio(pcm)
        await client.end()
        transcript = await client.collect()
    assert transcript.messages[-1]["is_final"] is True
    assert transcript.finals and transcript.finals[0]["wav_name"] == "secure"


async def test_pages_and_health_are_served_over_https_on_the_same_port(
        tls_server, certificates):
    def get(path: str) -> bytes:
        address = f"https://localhost:{tls_server.port}{path}"
        return urllib.request.urlopen(address, context=certificates.client_context(),
                                      timeout=30).read()

    assert b"<html" in (await asyncio.to_thread(get, "/display/hall")).lower()
    assert json.loads(await asyncio.to_thread(get, "/health"))["status"] == "ok"


async def test_plain_ws_is_not_answered_on_a_tls_port(tls_server):
    with pytest.raises(Exception):  # noqa: B017 — any handshake failure will do
        async with connect(f"ws://localhost:{tls_server.port}/", open_timeout=10):
            pass


async def test_untrusted_certificate_is_rejected_by_a_verifying_client(tls_server):
    with pytest.raises(ssl.SSLCertVerificationError):
        async with connect(f"wss://localhost:{tls_server.port}/",
                           ssl=ssl.create_default_context()):
            pass


def test_unusable_tls_files_fail_at_startup_with_their_name(tmp_path, certificates):
    with pytest.raises(TLSConfigError, match="not found"):
        TLSFiles(str(tmp_path / "missing.pem")).context()
    with pytest.raises(TLSConfigError, match="cannot use certificate"):
        TLSFiles(str(certificates.certfile), str(certificates.ca_file)).context()
