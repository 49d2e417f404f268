"""The client commands present a token (`--token`, $CAPTIOND_TOKEN) or a signed
link, and a refusal is one line on stderr (docs/security.md)."""

from __future__ import annotations

import os

from clients.cli import normalize_url
from clients.watch import room_url
from server.auth import AccessPolicy, parse_token_spec, sign_link
from tests.clients.test_file_client import run_cli
from tests.conftest import DATA
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine

TOKEN = "client-token-1"


async def test_file_command_streams_with_its_token_and_is_refused_without(start_server, tmp_path):
    policy = AccessPolicy(tokens=(parse_token_spec(TOKEN),))
    server = await start_server(StrideCountingEngine(), access=policy)
    out = tmp_path / "t.json"
    code, _, err = await run_cli("file", str(DATA / "utt01.wav"), url(server), "--no-realtime",
                                 "--no-progress", "--token", TOKEN, "-o", str(out))
    assert code == 0, err
    assert out.exists()
    os.environ.pop("CAPTIOND_TOKEN", None)
    code, _, err = await run_cli("file", str(DATA / "utt01.wav"), url(server), "--no-realtime",
                                 "--no-progress")
    assert code == 1 and err.count("\n") == 1 and "token is required" in err


def test_token_and_signed_link_travel_to_the_room_url():
    assert normalize_url("https://h:1", "a b") == "wss://h:1?token=a%20b"
    link = f"https://h:1/display/hall?t={sign_link(TOKEN, 'hall', 2**40)}&fontSize=9"
    watched = room_url(normalize_url(link), "hall")
    assert watched.startswith("wss://h:1/rooms/hall?t=") and "fontSize" not in watched
