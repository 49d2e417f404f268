"""The web pages (web_demo/) served on the captiond port itself — no separate
web server and no build step (docs/design.md §3)."""

from __future__ import annotations

import email.utils
import http
import mimetypes
from importlib import resources
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Response

PAGES = {"": "index.html", "display": "display.html", "overlay": "overlay.html"}
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


def web_root() -> Path:
    return Path(str(resources.files("web_demo")))


def page_for(path: str) -> str | None:
    """`/` → index.html, `/display/<room>` → display.html, `/static/x.js` → x.js."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[0] == "static" and len(parts) > 1:
        return "/".join(parts[1:])
    if parts[0] in PAGES and len(parts) <= 2:
        return PAGES[parts[0]]
    return None


def respond_static(connection: ServerConnection, path: str) -> Response:
    name = page_for(path)
    root = web_root().resolve()
    target = (root / name).resolve() if name else None
    # resolve() + the parent check refuse ../ escapes out of web_demo/
    if target is None or root not in target.parents or not target.is_file():
        return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found\n")
    body = target.read_bytes()
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ])
    # Built directly: respond() already sets Content-Type/Length, and assigning
    # to websockets' Headers adds a second copy, which browsers reject.
    return Response(http.HTTPStatus.OK.value, http.HTTPStatus.OK.phrase, headers, body)
