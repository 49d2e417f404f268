"""`captiond watch ROOM`: a room's captions in the terminal, read-only.

Finals are printed and scroll; the live partials (one per speaker) and a
connection status line update in place below them. When the connection drops
it reconnects with exponential backoff; the room's history, replayed on join
(docs/design.md §4), fills in finals missed meanwhile, and `CaptionBoard` drops the
ones already shown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from clients.captions import Caption, CaptionBoard

SPEAKER_STYLES = ("bold cyan", "bold magenta", "bold green", "bold yellow", "bold blue")


@dataclass
class Backoff:
    """Reconnect delays: `first`, doubling up to `longest` seconds."""

    first: float = 0.5
    longest: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2, self.longest)


def room_url(url: str, room: str) -> str:
    """`ws://host:port[/anything]` + room → `ws://host:port/rooms/<room>`."""
    parts = urlsplit(url)
    # a token or a signed link's t stays (docs/security.md); the rest of the query goes
    credentials = [(k, v) for k, v in parse_qsl(parts.query) if k in ("token", "t")]
    path = f"/rooms/{quote(room, safe='')}"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(credentials), ""))


class RoomView:
    """What the terminal shows below the scrolling finals."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.board = CaptionBoard()
        self.status = f"connecting to room {room}…"
        self.last_id: int | None = None  # the newest room id received (where to resume)
        self._styles: dict[str, str] = {}

    def style(self, who: str) -> str:
        if who not in self._styles:
            self._styles[who] = SPEAKER_STYLES[len(self._styles) % len(SPEAKER_STYLES)]
        return self._styles[who]

    def final_line(self, caption: Caption) -> Text:
        return self._line(caption.who, Text(caption.text))

    def __rich__(self) -> RenderableType:
        lines = []
        for partial in list(self.board.partials.values()):
            body = Text(partial.stable, style="")
            if partial.unstable:
                body.append(partial.text[len(partial.stable):], style="dim italic")
            lines.append(self._line(partial.who, body))
        lines.append(Text(self.status, style="dim"))
        return Group(*lines)

    def _line(self, who: str, body: Text) -> Text:
        if not who:
            return body
        return Text.assemble((f"{who}: ", self.style(who)), body)


async def watch_room(url: str, room: str, console: Console | None = None,
                     stop: asyncio.Event | None = None, backoff: Backoff | None = None) -> None:
    """Show the room until `stop` is set (or forever), reconnecting as needed."""
    console = console or Console(highlight=False)
    stop = stop or asyncio.Event()
    view = RoomView(room)
    target = room_url(url, room)
    with Live(view, console=console, auto_refresh=False, transient=True) as live:
        delays = None
        while not stop.is_set():
            # resume after the newest final seen: the server sends what was missed
            resume = target if view.last_id is None else \
                f"{target}{'&' if '?' in target else '?'}after={view.last_id}"
            connected, reason = await _follow(resume, view, live, stop)
            if stop.is_set():
                break
            if connected or delays is None:  # a working link that dropped starts over short
                delays = (backoff or Backoff()).delays()
            view.board.clear_partials()  # they will not be finished on the old connection
            delay = next(delays)
            view.status = f"{reason}; reconnecting in {delay:g} s…"
            live.refresh()
            await _wait(stop, delay)


async def _follow(target: str, view: RoomView, live: Live,
                  stop: asyncio.Event) -> tuple[bool, str]:
    """One connection: apply messages until it closes or `stop` is set.
    Returns whether it was connected, and why it ended."""
    connected = False
    try:
        async with connect(target, open_timeout=10) as websocket:
            connected = True
            view.status = f"● room {view.room} — live"
            live.refresh()
            await _receive(websocket, view, live, stop)
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        return connected, f"cannot reach {target} ({exc or type(exc).__name__})"
    except ConnectionClosed:
        pass
    return connected, "disconnected"


async def _receive(websocket: ClientConnection, view: RoomView, live: Live,
                   stop: asyncio.Event) -> None:
    stopping = asyncio.ensure_future(stop.wait())
    receiving: asyncio.Future = stopping
    try:
        while True:
            receiving = asyncio.ensure_future(websocket.recv())
            await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                return
            message = json.loads(receiving.result())
            if isinstance(message.get("id"), int):
                view.last_id = message["id"]
            final = view.board.receive(message)
            if final is not None:
                live.console.print(view.final_line(final), soft_wrap=True)
            live.refresh()
    except asyncio.CancelledError:
        await websocket.close()  # Ctrl-C: leave the room politely (1000, not 1011)
        raise
    finally:
        receiving.cancel()
        stopping.cancel()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
