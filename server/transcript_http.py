"""HTTP on the captiond port for rooms' transcripts (docs/transcripts.md):

    /rooms/<room>/transcript.{txt,json,srt,vtt}[?from=<s>&to=<s>]
    /rooms/<room>/streams/<stream>/transcript.{txt,json,srt,vtt}[?from=<s>&to=<s>]

`from`/`to` are seconds on the export's timeline (what the cues show). Access
is what viewers of the room have (docs/security.md): the same token, signed
link (`?t=`) or public room. Also parses a viewer's `/rooms/<room>?after=<id>`.
"""

from __future__ import annotations

import email.utils
import http
import json
import re
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from server import export
from server.auth import Refusal
from server.store import StoredFinal, TranscriptStore
from streaming.config import ROOM_NAME

_EXPORT = re.compile(r"/rooms/(?P<room>[^/]+)(?:/streams/(?P<stream>[0-9a-f]{1,32}))?"
                     r"/transcript\.(?P<format>txt|json|srt|vtt)")
CONTENT_TYPES = {"txt": "text/plain", "json": "application/json",
                 "srt": "application/x-subrip", "vtt": "text/vtt"}


def viewer_after(target: str) -> int | None:
    """The `after` id of a viewer's request target, if it gave one."""
    after = parse_qs(urlsplit(target).query).get("after", [""])[0]
    return int(after) if after.isdigit() else None


async def respond_transcript(connection: ServerConnection, request: Request,
                             store: TranscriptStore,
                             viewer_refusal: Callable[[Request, str], Refusal | None]
                             ) -> Response | None:
    """The export a request asks for; None when the path is not an export."""
    parts = urlsplit(request.path)
    found = _EXPORT.fullmatch(parts.path)
    if found is None:
        return None
    room, stream, fmt = unquote(found["room"]), found["stream"], found["format"]
    try:
        since, until = _range(parse_qs(parts.query))
    except ValueError:
        return connection.respond(http.HTTPStatus.BAD_REQUEST,
                                  "from and to are seconds, e.g. ?from=60&to=120\n")
    if not ROOM_NAME.fullmatch(room):
        return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found\n")
    refusal = viewer_refusal(request, room)
    if refusal is not None:
        response = connection.respond(refusal.status, json.dumps(
            {"error": refusal.message, "code": refusal.code}) + "\n")
        response.headers["Content-Type"] = "application/json"
        return response
    finals, origin = await _finals(store, room, stream)
    if stream is not None and not finals:
        return connection.respond(http.HTTPStatus.NOT_FOUND, "No such stream\n")
    finals = export.in_range(finals, origin, since, until)
    body = _render(fmt, room, finals, origin)
    return _file_response(body, fmt, f"{room}{'-' + stream if stream else ''}.{fmt}")


async def _finals(store: TranscriptStore, room: str, stream: str | None
                  ) -> tuple[list[StoredFinal], float]:
    finals: list[StoredFinal] = []
    while page := await store.finals(room, finals[-1].id if finals else 0, stream=stream,
                                     limit=1000):
        finals += page
    if stream is not None:
        return finals, finals[0].stream.started_at if finals else 0.0
    streams = await store.streams(room)
    return finals, min((s.started_at for s in streams), default=0.0)


def _range(query: dict[str, list[str]]) -> tuple[float | None, float | None]:
    def seconds(name: str) -> float | None:
        values = query.get(name)
        return float(values[0]) if values else None

    return seconds("from"), seconds("to")


def _render(fmt: str, room: str, finals: list[StoredFinal], origin: float) -> str:
    if fmt == "json":
        return export.to_json(room, finals, origin)
    if fmt == "srt":
        return export.to_srt(finals, origin)
    if fmt == "vtt":
        return export.to_vtt(finals, origin)
    return export.to_txt(finals, origin)


def _file_response(body: str, fmt: str, filename: str) -> Response:
    data = body.encode()
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Type", f"{CONTENT_TYPES[fmt]}; charset=utf-8"),
        ("Content-Length", str(len(data))),
        ("Content-Disposition", f'inline; filename="{filename}"'),
        ("Cache-Control", "no-cache"),
    ])
    return Response(http.HTTPStatus.OK.value, http.HTTPStatus.OK.phrase, headers, data)
