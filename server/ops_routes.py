"""HTTP routes for operators: `/healthz`, `/readyz`, `/metrics` (docs/operations.md).

- `/healthz`: the process answers, so it is alive (a container's HEALTHCHECK).
- `/readyz`: 200 only when the server should get traffic: started (models
  loaded, runner going), not draining, and every readiness check passing.
  Other parts (a transcript store) add a check to `server.readiness_checks`:
  a callable returning None when fine, else why not.
- `/metrics`: Prometheus text, for admins: `server.admin_check` is access
  control's admin check (server/auth.py; everyone while access control is off).
"""

from __future__ import annotations

import email.utils
import http
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from server.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from server.app import CaptionServer

ReadinessCheck = Callable[[], "str | None"]
AdminCheck = Callable[[Request], bool]


def not_ready_reasons(server: CaptionServer) -> list[str]:
    reasons = []
    if not server.started:
        reasons.append("starting: models or engine not ready")
    if server.draining:
        reasons.append("draining: shutting down")
    reasons += [why for check in server.readiness_checks if (why := check()) is not None]
    return reasons


def respond_ops(server: CaptionServer, connection: ServerConnection,
                request: Request) -> Response | None:
    """The answer to an operator route, or None for any other path."""
    path = request.path.split("?", 1)[0]
    if path == "/healthz":
        return text_response(http.HTTPStatus.OK, "ok\n")
    if path == "/readyz":
        reasons = not_ready_reasons(server)
        if reasons:
            return text_response(http.HTTPStatus.SERVICE_UNAVAILABLE,
                         "".join(f"{why}\n" for why in reasons))
        return text_response(http.HTTPStatus.OK, "ready\n")
    if path == "/metrics":
        if not server.admin_check(request):
            return text_response(http.HTTPStatus.FORBIDDEN, "admin access required\n")
        return _response(http.HTTPStatus.OK, server.metrics_text(), CONTENT_TYPE)
    return None


def text_response(status: http.HTTPStatus, body: str) -> Response:
    return _response(status, body.encode(), "text/plain; charset=utf-8")


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                       ("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, body)
