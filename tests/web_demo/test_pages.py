"""The web pages in real headless Chromium (docs/design.md §7), served by a real server.

The browser's microphone is a fixture WAV (`--use-file-for-fake-audio-capture`),
the engine Whisper tiny.en, so what the pages show is real English. Set
CAPTIOND_SCREENSHOTS=docs/screenshots to refresh the README's screenshots;
otherwise they go to a temporary directory (and are still taken).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from clients.client import CaptionClient
from clients.file import FileOptions, transcribe_file
from server.app import CaptionServer
from server.config import ServerConfig
from streaming.admission import AdmissionPolicy
from tests.conftest import DATA, references
from tests.server.conftest import url
from tests.streaming.engine_double import StrideCountingEngine

playwright = pytest.importorskip("playwright.async_api")
expect = playwright.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]
VIEWPORT = {"width": 960, "height": 540}
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    # Skipped, not failed, without it (README "Test"); -ra prints the reason.
    pytest.mark.skipif(not shutil.which(CHROMIUM),
                       reason=f"needs Chromium at {CHROMIUM} (Debian: apt-get install chromium)"),
]


@pytest.fixture
async def launch_browser():
    """Start Chromium, optionally with a WAV file as its microphone."""
    async with playwright.async_playwright() as driver:
        browsers = []

        async def launch(microphone: Path | None = None):
            args = list(CHROMIUM_ARGS)
            if microphone is not None:  # %noloop: the file once, then silence
                args.append(f"--use-file-for-fake-audio-capture={microphone}%noloop")
            browsers.append(await driver.chromium.launch(executable_path=CHROMIUM, args=args))
            return browsers[-1]

        yield launch
        for browser in browsers:
            await browser.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("CAPTIOND_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def open_page(browser, address: str):
    page = await browser.new_page(viewport=VIEWPORT)
    page.errors = []  # uncaught exceptions in the page fail the test
    page.on("pageerror", lambda error: page.errors.append(error))
    await page.goto(address)
    return page


def http(server: CaptionServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def stream_file(server: CaptionServer, name: str, **options) -> None:
    await transcribe_file(
        FileOptions(str(DATA / name), url(server), realtime=False, progress=False, **options),
        console=Console(file=io.StringIO()),
    )


def words_pattern(sentence: str) -> re.Pattern:
    """The sentence's words in order, ignoring case and punctuation."""
    words = re.findall(r"[a-z']+", sentence.lower())
    return re.compile(r"\W+".join(words), re.IGNORECASE)


async def test_live_page_captions_the_browser_microphone(start_server, whisper_engine,
                                                         launch_browser, screenshots):
    server = await start_server(whisper_engine)
    browser = await launch_browser(microphone=DATA / "utt01.wav")
    page = await open_page(browser, http(server, "/"))
    await page.fill("input[name=room]", "board")  # settings persist across reloads
    await page.reload()
    await expect(page.locator("input[name=room]")).to_have_value("board")

    await page.click("#start")
    final = page.locator("#transcript .final")
    await expect(final).to_have_text(words_pattern(references()["utt01.wav"]),
                                     timeout=TIMEOUT_MS)
    await page.screenshot(path=screenshots / "index.png")
    await page.click("#stop")  # is_speaking:false, then the stream's last message
    await expect(page.locator("#status")).to_have_text("ready", timeout=TIMEOUT_MS)
    await expect(page.locator("#start")).to_be_enabled()
    assert await final.count() == 1 and page.errors == []


async def test_live_page_says_when_the_server_is_unreachable(launch_browser, start_server,
                                                             whisper_engine):
    server = await start_server(whisper_engine)
    browser = await launch_browser(microphone=DATA / "utt01.wav")
    page = await open_page(browser, http(server, "/"))
    await server.stop()  # the page is loaded; now the server is gone
    await page.click("#start")
    await expect(page.locator("#error")).to_contain_text("Cannot reach the caption server")
    await expect(page.locator("#start")).to_be_enabled()


async def test_live_page_says_when_the_server_refuses_for_load(start_server, launch_browser):
    server = await start_server(StrideCountingEngine(), admission=AdmissionPolicy(max_streams=1))
    browser = await launch_browser(microphone=DATA / "utt01.wav")
    page = await open_page(browser, http(server, "/"))
    async with CaptionClient.connect(url(server)) as busy:  # takes the only slot
        await busy.start(mode="2pass")
        await busy.send_audio(bytes(3200))
        await page.click("#start")
        await expect(page.locator("#error")).to_contain_text("busy")
        await expect(page.locator("#error")).to_contain_text("1013")
    await expect(page.locator("#start")).to_be_enabled()


async def test_display_shows_the_room_and_reconnects_after_a_server_restart(
        start_server, whisper_engine, launch_browser, screenshots):
    server = await start_server(whisper_engine)
    browser = await launch_browser()
    display = await open_page(browser, http(server, "/display/board?font=40"))
    overlay = await open_page(browser, http(server, "/overlay/board?fade=600"))
    status = display.locator("#status")
    await expect(status).to_have_text("live")

    await stream_file(server, "multi.wav", room="board", speaker="Ada")
    finals = display.locator("#captions .final")
    await expect(finals).to_have_text([words_pattern(s) for s in references()["multi.wav"]],
                                      timeout=TIMEOUT_MS)
    await expect(overlay.locator("#captions p")).to_have_count(2)  # the newest two lines
    await _overlay_screenshot(overlay, screenshots / "overlay.png")

    for connection in server._server.connections:  # the viewers' links drop
        if connection.request.path.startswith("/rooms/"):
            await connection.close()
    await expect(status).to_contain_text("reconnecting")
    await expect(status).to_have_text("live")  # back, and the history was replayed …
    await display.wait_for_timeout(500)
    await expect(finals).to_have_count(3)  # … without showing a final twice

    port = server.port
    await server.stop()
    await expect(status).to_contain_text("reconnecting")
    restarted = CaptionServer(ServerConfig(host="127.0.0.1", port=port, calibrate=False),
                              whisper_engine)
    await restarted.start()
    try:
        await expect(status).to_have_text("live", timeout=TIMEOUT_MS)  # by itself
        await stream_file(restarted, "utt02.wav", room="board", speaker="Grace")
        expected = [*references()["multi.wav"], references()["utt02.wav"]]
        await expect(finals).to_have_count(4, timeout=TIMEOUT_MS)  # each final shown once
        texts = await finals.all_inner_texts()
        assert [bool(words_pattern(s).search(t)) for s, t in zip(expected, texts)] == [True] * 4
        # Two speakers now: names appear on the lines.
        await expect(finals.last.locator(".speaker")).to_have_text("Grace:")
        await display.screenshot(path=screenshots / "display.png")
    finally:
        await restarted.stop()
    assert display.errors == [] and overlay.errors == []


async def test_display_settings_come_from_buttons_and_persist(start_server, whisper_engine,
                                                              launch_browser):
    server = await start_server(whisper_engine)
    browser = await launch_browser()
    page = await open_page(browser, http(server, "/display/board"))
    await page.click("#theme")
    await page.click("#larger")
    await page.reload()
    assert await page.evaluate("document.body.classList.contains('dark')") is False
    size = await page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--caption-size')")
    assert size.strip() == "55px"  # 48 * 1.15, kept across the reload


async def _overlay_screenshot(page, path: Path) -> None:
    """The overlay is transparent; shoot it over a stand-in for video so it reads."""
    await page.add_style_tag(content="html { background: #3b4f63 !important; }")
    await page.screenshot(path=path)
