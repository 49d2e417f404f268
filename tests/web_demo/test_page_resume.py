"""The display and overlay pages resume a room with `?after=<id>` after their
link drops, and show what they missed once (docs/transcripts.md); the overlay
only the newest lines of it, and nothing old when it first joins."""

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
    await expect(overlay.locator("#captions p").last).to_contain_text("Grace:")  # resumed too
    resumed = [u for u in sockets if "after=" in u]
    assert sorted(u.rsplit("/", 1)[1] for u in resumed) == ["board?after=1"] * 2
    assert display.errors == [] and overlay.errors == []


async def next_frames(page) -> None:
    """Two animation frames: the overlay renders at most once per frame."""
    await page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


async def test_the_overlay_shows_the_newest_missed_finals_once_and_no_old_history(  # noqa: F811
        start_server, launch_browser):
    server = await start_server(StrideCountingEngine())
    await stream_file(server, "utt01.wav", room="stage", speaker="Ada")  # before anyone watches
    browser = await launch_browser()
    context = await browser.new_context()
    overlay = await context.new_page()
    errors, sockets = [], []
    overlay.on("pageerror", lambda error: errors.append(error))
    overlay.on("websocket", lambda ws: sockets.append(ws.url))
    await overlay.goto(http(server, "/overlay/stage?lines=2&fade=2"))
    await overlay.wait_for_function("window.captiond.board.finals.length === 1")
    await next_frames(overlay)
    lines = overlay.locator("#captions p")
    assert await lines.count() == 0  # a first join: Ada's final is old news (no retry:
    # expect() would wait until a wrongly shown line had faded)

    await context.set_offline(True)  # the network drops; the overlay cannot reconnect
    for connection in server._server.connections:
        if connection.request.path.startswith("/rooms/"):
            await connection.close()
    await expect(overlay.locator("#status")).to_contain_text("reconnecting")
    for file, speaker in [("utt02.wav", "Grace"), ("utt03.wav", "Lin"), ("utt04.wav", "Kai")]:
        await stream_file(server, file, room="stage", speaker=speaker)  # said meanwhile
    await context.set_offline(False)

    missed = await server.rooms.store.finals("stage", 1)
    assert [f.id for f in missed] == [2, 3, 4]
    # As it would have shown them live: the newest two lines, not the backlog.
    await expect(lines).to_have_text([f"{f.speaker}: {f.text}" for f in missed[-2:]],
                                     timeout=30_000)
    joined, *retries = [u.rsplit("/", 1)[1] for u in sockets]  # retries: offline ones too
    assert joined == "stage" and set(retries) == {"stage?after=1"}
    await expect(lines).to_have_count(0)  # then they fade, as live lines do
    await next_frames(overlay)
    assert await lines.count() == 0  # and do not come back
    assert errors == []
