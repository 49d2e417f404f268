"""The pages carry their URL's credentials to the server (docs/security.md): a
display opened from a signed link shows the room; an expired link is refused."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from clients.client import ServerError
from clients.file import FileOptions, transcribe_file
from server.auth import AccessPolicy, parse_token_spec, sign_link
from tests.conftest import DATA
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine
from tests.web_demo.test_pages import (  # noqa: F401
    expect,
    http,
    launch_browser,  # noqa: F401 — the fixture
    open_page,
    pytestmark,
)

TOKEN = "page-token-123"


async def stream_into_board(server, path: str) -> None:
    await transcribe_file(
        FileOptions(str(DATA / "utt02.wav"), url(server, path), room="board",
                    realtime=False, progress=False),
        console=Console(file=io.StringIO()),
    )


async def test_display_from_a_signed_link_shows_the_room_and_an_expired_one_does_not(
        start_server, launch_browser):  # noqa: F811
    server = await start_server(StrideCountingEngine(),
                                access=AccessPolicy(tokens=(parse_token_spec(TOKEN),)))
    browser = await launch_browser()
    t = sign_link(TOKEN, "board", int(time.time()) + 3600)
    display = await open_page(browser, http(server, f"/display/board?t={t}"))
    await expect(display.locator("#status")).to_have_text("live")
    expired = await open_page(
        browser, http(server, f"/display/board?t={sign_link(TOKEN, 'board', 1)}"))
    await expect(expired.locator("#status")).to_contain_text("access refused")

    with pytest.raises(ServerError, match="token is required"):
        await stream_into_board(server, "/")
    await stream_into_board(server, f"/?token={TOKEN}")
    await expect(display.locator("#captions .final")).to_have_count(1)
    assert display.errors == [] and expired.errors == []
