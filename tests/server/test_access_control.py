"""Tokens, roles, signed viewer links and Origin checks over real sockets
(docs/security.md): a refused client gets HTTP 401/403 at the handshake or an
error and close 1008, and nothing else happens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.auth import AccessPolicy, exposure_problem, parse_token_spec, sign_link
from server.cli import main as captiond
from tests.conftest import wav_pcm16
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-secret-1"  # every role
SPEAKER = "speaker-secret"  # streams into hall only
VIEWER = "viewer-secret"  # watches hall only
POLICY = AccessPolicy(tokens=(
    parse_token_spec(ADMIN),
    parse_token_spec(f"{SPEAKER}:speaker:hall"),
    parse_token_spec(f"{VIEWER}:viewer:hall"),
), public_rooms=frozenset({"lobby"}))


@pytest.fixture
async def guarded(start_server):
    engine = StrideCountingEngine()
    server = await start_server(engine, access=POLICY)
    return server, engine


async def handshake_status(uri: str, **options) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(uri, **options):
            pass
    return refused.value.response.status_code


async def stream(uri: str, config: dict, **options) -> tuple[list[dict], int | None]:
    """A short 2pass stream: every message until is_final or an error, and the
    close code (None while the connection stays open)."""
    pcm, rate = wav_pcm16("utt02.wav")
    async with connect(uri, **options) as ws:
        with contextlib.suppress(ConnectionClosed):  # a refused stream's audio may bounce
            await ws.send(json.dumps({"mode": "2pass", "audio_fs": rate, **config}))
            await ws.send(pcm)
            await ws.send(json.dumps({"is_speaking": False}))
        messages = [json.loads(await ws.recv())]
        while not (messages[-1].get("is_final") or "error" in messages[-1]):
            messages.append(json.loads(await ws.recv()))
        if "error" in messages[-1]:
            await ws.wait_closed()
        return messages, ws.close_code


async def test_wrong_or_missing_token_is_refused_at_the_handshake(guarded):
    server, _ = guarded
    assert await handshake_status(url(server, "/?token=wrong-token")) == 401
    assert await handshake_status(
        url(server), additional_headers={"Authorization": "Bearer wrong-token"}) == 401
    assert await handshake_status(url(server, "/rooms/hall")) == 401
    assert await handshake_status(url(server, "/rooms/hall?token=wrong-token")) == 401


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
async def test_stream_without_a_valid_token_is_closed_with_1008_and_nothing_happens(
        guarded, token):
    server, engine = guarded
    async with connect(url(server, f"/rooms/hall?token={VIEWER}")) as viewer:
        config = {"room": "hall", **({"token": token} if token else {})}
        messages, close_code = await stream(url(server), config)
        assert close_code == 1008
        assert [m["code"] for m in messages] == ["unauthorized"]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(viewer.recv(), 0.5)  # nothing reached the room
    assert engine.step_batches == [] and engine.finals == []  # nor the model


@pytest.mark.parametrize("how", ["query", "bearer", "config"])
async def test_a_speaker_token_streams_however_it_is_presented(guarded, how):
    server, _ = guarded
    uri, options, config = url(server), {}, {"room": "hall"}
    if how == "query":
        uri = url(server, f"/?token={SPEAKER}")
    elif how == "bearer":
        options = {"additional_headers": {"Authorization": f"Bearer {SPEAKER}"}}
    else:
        config["token"] = SPEAKER
    messages, _ = await stream(uri, config, **options)
    assert messages[-1]["is_final"] is True
    assert any(m["mode"] == "2pass-offline" and m["text"] for m in messages)


async def test_a_viewer_token_cannot_publish_into_a_room(guarded):
    server, engine = guarded
    assert await handshake_status(url(server, f"/?token={VIEWER}")) == 403
    messages, close_code = await stream(url(server), {"room": "hall", "token": VIEWER})
    assert close_code == 1008 and messages[-1]["code"] == "forbidden"
    # …and a speaker may not stream into a room its token does not name
    messages, close_code = await stream(url(server), {"room": "other", "token": SPEAKER})
    assert close_code == 1008 and messages[-1]["code"] == "forbidden"
    assert engine.finals == []


async def test_signed_link_works_until_it_expires_and_a_tampered_one_fails(guarded, capsys):
    server, _ = guarded
    assert captiond(["link", "hall", "--ttl", "1h", "--token", ADMIN,
                     "--base-url", f"http://127.0.0.1:{server.port}"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"http://127.0.0.1:{server.port}/display/hall?t=")
    t = printed.split("?t=", 1)[1]
    async with connect(url(server, f"/rooms/hall?t={t}")) as viewer:
        messages, _ = await stream(url(server), {"room": "hall", "token": SPEAKER})
        seen = json.loads(await asyncio.wait_for(viewer.recv(), 10))
        assert seen["room"] == "hall"
    expiry, mac = t.split(".")
    tampered = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    assert await handshake_status(url(server, f"/rooms/hall?t={expiry}.{tampered}")) == 401
    # the expiry is signed: moving it on invalidates the MAC
    assert await handshake_status(url(server, f"/rooms/hall?t={int(expiry) + 3600}.{mac}")) == 401
    assert await handshake_status(url(server, f"/rooms/other?t={t}")) == 401  # another room
    assert sign_link(ADMIN, "hall", int(expiry)) == t  # what the command printed
    server.gate.access.clock = lambda: int(expiry) + 1  # the clock passes the expiry
    assert await handshake_status(url(server, f"/rooms/hall?t={t}")) == 401


async def test_public_room_is_watched_without_a_token(guarded):
    server, _ = guarded
    async with connect(url(server, "/rooms/lobby")):
        pass
    assert await handshake_status(url(server, "/rooms/hall")) == 401


@pytest.mark.parametrize("access", [AccessPolicy(), POLICY], ids=["open", "tokens"])
async def test_a_disallowed_origin_is_refused(start_server, access):
    server = await start_server(StrideCountingEngine(), access=AccessPolicy(
        tokens=access.tokens, allowed_origins=frozenset({"https://obs.example.org"})))
    token = f"?token={ADMIN}" if access.tokens else ""
    for path in ("/", "/rooms/hall"):
        assert await handshake_status(url(server, path + token),
                                      origin="https://evil.example.com") == 403
        async with connect(url(server, path + token), origin="https://obs.example.org"):
            pass
        same = f"http://127.0.0.1:{server.port}"  # a page this server served
        async with connect(url(server, path + token), origin=same):
            pass


async def test_health_details_are_for_admins(guarded):
    server, _ = guarded
    base = f"http://127.0.0.1:{server.port}/health"
    assert await get_json(base) == {"status": "ok"}
    full = await get_json(f"{base}?token={ADMIN}")
    assert "live_streams" in full and "refused" in full
    assert await get_json(f"{base}?token={SPEAKER}") == {"status": "ok"}


async def get_json(address: str) -> dict:
    # In a thread: the server answers on this test's event loop.
    response = await asyncio.to_thread(urllib.request.urlopen, address, timeout=30)
    return json.loads(response.read())


def test_server_refuses_to_start_open_without_a_token():
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--host", "0.0.0.0", "--port", "0",
         "--online-model", "/nonexistent/model"],  # refused before any model is looked for
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "CAPTIOND_TOKEN": ""},
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr
    assert "--token" in result.stderr and "--insecure-open" in result.stderr
    assert "/nonexistent/model" not in result.stderr


def test_only_local_addresses_may_listen_without_a_token():
    open_policy, tokens = AccessPolicy(), POLICY
    for host in ("127.0.0.1", "localhost", "::1"):
        assert exposure_problem(host, open_policy) is None
    for host in ("0.0.0.0", "", "192.168.1.20", "::", "captions.example.org"):
        assert exposure_problem(host, open_policy) is not None
        assert exposure_problem(host, tokens) is None
        assert exposure_problem(host, AccessPolicy(insecure_open=True)) is None
