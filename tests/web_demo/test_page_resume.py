"""The display and overlay pages resume a room with `?after=<id>` after their
link drops, and show what they missed once (docs/transcripts.md)."""

from __future__ import annotations

import shutil

import pytest

from tests.streaming.engine_double import StrideCountingEngine
from tests.web_demo.test_pages import CHROMIUM, http, launch_browser, stream_file

playwright = pytest.importorskip("playwright.async_api")
expect = playwright.expect

__all__ = ["launch_browser"]  # the fixture, shared with test_pages

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"needs Chromium at {CHROMIUM}"),
]


async def test_display_and_overlay_resume_after_the_last_final_they_saw(  # noqa: F811
        start_server, launch_browser):
    server = await start_server(StrideCountingEngine())
    browser = await launch_browser()
    pages, sockets = [], []
    for path in ["/display/board", "/overlay/board"]:
        page = await browser.new_page()
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.errors = []
        page.on("pageerror", lambda error, page=page: page.errors.append(error))
        await page.goto(http(server, path))
        pages.append(page)
    display, overlay = pages
    await expect(display.locator("#status")).to_have_text("live")

    await stream_file(server, "utt01.wav", room="board", speaker="Ada")
    finals = display.locator("#captions .final")
    await expect(finals).to_have_count(1)
    for connection in server._server.connections:  # the pages' links drop
        if connection.request.path.startswith("/rooms/"):
            await connection.close()
    await stream_file(server, "utt02.wav", room="board", speaker="Grace")  # said meanwhile
    await expect(display.locator("#status")).to_have_text("live")
    await expect(finals).to_have_count(2)
    await expect(finals.last.locator(".speaker")).to_have_text("Grace:")
    resumed = [u for u in sockets if "after=" in u]
    assert sorted(u.rsplit("/", 1)[1] for u in resumed) == ["board?after=1"] * 2
    assert display.errors == [] and overlay.errors == []
